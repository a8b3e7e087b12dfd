import { Connection } from '../sdk/connection.js';
import { Sandbox } from '../sdk/sandbox.js';

/** Tells the user once that this command started the server in the background. */
const announce = ({ pid, log }: { pid: number; log: string }) =>
  process.stderr.write(`vmbox: started the vmbox server in the background (pid ${pid}, log ${log})\n`);

/** The CLI's connection to the server: VMBOX_URL/VMBOX_TOKEN, else the local one, started when absent. */
export const connectOptions = { onServerStart: announce };

export function openConnection(): Promise<Connection> {
  return Connection.open(connectOptions);
}

export function sandboxHandle(ref: string): Promise<Sandbox> {
  return Sandbox.connect(ref, connectOptions);
}
