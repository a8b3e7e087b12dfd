import { EventEmitter } from 'node:events';
import net from 'node:net';
import { VmboxError } from '../../errors.js';

/** QMP commands vmbox uses, with their argument and return types. */
export interface QmpCommands {
  qmp_capabilities: { args: Record<string, never>; ret: Record<string, never> };
  'query-status': { args: Record<string, never>; ret: { running: boolean; status: string } };
  quit: { args: Record<string, never>; ret: Record<string, never> };
  stop: { args: Record<string, never>; ret: Record<string, never> };
  cont: { args: Record<string, never>; ret: Record<string, never> };
  'migrate-set-capabilities': {
    args: { capabilities: { capability: string; state: boolean }[] };
    ret: Record<string, never>;
  };
  migrate: { args: { uri: string }; ret: Record<string, never> };
  'migrate-incoming': { args: { uri: string }; ret: Record<string, never> };
  'migrate-set-parameters': { args: { 'downtime-limit'?: number; 'max-bandwidth'?: number }; ret: Record<string, never> };
  'query-migrate': { args: Record<string, never>; ret: { status?: string; 'error-desc'?: string; downtime?: number } };
}

export interface QmpEvent {
  event: string;
  data?: unknown;
  timestamp: { seconds: number; microseconds: number };
}

type Message =
  | { QMP: { version: unknown; capabilities: unknown } }
  | { return: unknown; id?: number }
  | { error: { class: string; desc: string }; id?: number }
  | QmpEvent;

/** Splits QMP's newline-delimited JSON stream into messages. Exported for unit tests. */
export class QmpParser {
  private rest = '';
  push(chunk: string): Message[] {
    // Only the new chunk is searched for a line's end: a long line arriving in many chunks costs linear time, not quadratic.
    if (!chunk.includes('\n')) {
      this.rest += chunk;
      return [];
    }
    const lines = (this.rest + chunk).split('\n');
    this.rest = lines.pop() ?? '';
    const out: Message[] = [];
    for (const line of lines) {
      const t = line.trim();
      if (!t) continue;
      let m: unknown;
      try {
        m = JSON.parse(t);
      } catch {
        throw new VmboxError('agentProtocol', `QEMU sent a line that is not JSON: ${t.slice(0, 80)}`);
      }
      // JSON that is not an object (or an error that is not one) would make the client's dispatch throw in a socket callback.
      if (!isObject(m) || ('error' in m && !isObject(m.error))) {
        throw new VmboxError('agentProtocol', `QEMU sent a line that is not a QMP message: ${t.slice(0, 80)}`);
      }
      out.push(m as Message);
    }
    return out;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A typed QMP client over QEMU's unix socket. */
export class QmpClient extends EventEmitter<{ event: [QmpEvent]; close: [] }> {
  private readonly parser = new QmpParser();
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private greeted?: () => void;
  /** Set once the connection closed: a command sent after it would never be answered. */
  private closed?: VmboxError;

  private constructor(private readonly sock: net.Socket) {
    super();
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => this.onData(chunk));
    sock.on('error', () => {});
    sock.on('close', () => {
      const err = new VmboxError('vmDied', 'the QMP connection closed: QEMU has exited');
      this.closed = err;
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
      this.emit('close');
    });
  }

  /** Connects, waits for the greeting and negotiates capabilities. */
  static async connect(path: string, timeoutMs = 5000): Promise<QmpClient> {
    // QEMU binds its socket a moment before it listens: a connect in between is refused. Retry briefly.
    for (let i = 0; ; i++) {
      try {
        return await QmpClient.connectOnce(path, timeoutMs);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ECONNREFUSED' || i >= 100) throw err;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  }

  private static async connectOnce(path: string, timeoutMs: number): Promise<QmpClient> {
    const sock = net.createConnection(path);
    const client = new QmpClient(sock);
    const greeting = new Promise<void>((resolve, reject) => {
      client.greeted = resolve;
      sock.once('error', reject);
      setTimeout(() => reject(new VmboxError('bootFailed', `no QMP greeting on ${path} within ${timeoutMs} ms`)), timeoutMs).unref();
    });
    await greeting;
    await client.execute('qmp_capabilities', {});
    return client;
  }

  execute<C extends keyof QmpCommands>(command: C, args: QmpCommands[C]['args']): Promise<QmpCommands[C]['ret']> {
    const id = this.nextId++;
    const msg = Object.keys(args).length ? { execute: command, arguments: args, id } : { execute: command, id };
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(this.closed);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.sock.write(`${JSON.stringify(msg)}\n`);
    });
  }

  close(): void {
    this.sock.destroy();
  }

  private onData(chunk: string): void {
    let messages: Message[];
    try {
      messages = this.parser.push(chunk);
    } catch (err) {
      this.sock.destroy(err as Error);
      return;
    }
    for (const m of messages) {
      if ('QMP' in m) this.greeted?.();
      else if ('event' in m) this.emit('event', m);
      else if ('id' in m && m.id !== undefined) {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        if ('error' in m) p?.reject(new VmboxError('agentProtocol', `QMP ${m.error.class}: ${m.error.desc}`));
        else p?.resolve(m.return);
      }
    }
  }
}
