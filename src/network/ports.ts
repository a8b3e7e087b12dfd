import { createServer, type Server, type Socket } from 'node:net';
import { VmboxError } from '../errors.js';
import type { GuestConnection } from '../guest/connection.js';
import type { BoundPort, PublishedPort } from '../spec/network.js';
import { type Bandwidth, relay } from './relay.js';

/** How a published port reaches the guest: the sandbox's current agent. */
export type GuestDialer = (guestPort: number) => Promise<GuestConnection>;

interface Listener {
  port: BoundPort;
  server: Server;
  sockets: Set<Socket>;
}

/**
 * A sandbox's published ports: host listeners (loopback unless told) whose
 * connections are carried to a guest port over the agent channel. Nothing in the
 * guest listens on the host's behalf and no host port is opened anywhere else.
 */
export class PublishedPorts {
  private readonly listeners = new Map<string, Listener>();

  constructor(
    private readonly dial: GuestDialer,
    private readonly bandwidth: Bandwidth,
    private readonly onInbound: (port: BoundPort, bytes: { in: number; out: number }, error?: string) => void,
  ) {}

  list(): BoundPort[] {
    return [...this.listeners.values()].map((l) => l.port);
  }

  /** Binds the host side; a taken address is a clear error and binds nothing. */
  async add(p: PublishedPort): Promise<BoundPort> {
    const hostIp = p.hostIp ?? '127.0.0.1';
    if (p.hostPort !== 0 && this.listeners.has(key(hostIp, p.hostPort))) {
      throw new VmboxError('portInUse', `${hostIp}:${p.hostPort} is already published by this sandbox`);
    }
    const sockets = new Set<Socket>();
    const server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => this.accept(bound, socket, sockets));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        const why =
          err.code === 'EADDRINUSE'
            ? 'is in use on this host'
            : err.code === 'EADDRNOTAVAIL'
              ? 'is not an address of this host'
              : err.message;
        reject(new VmboxError('portInUse', `cannot publish on ${hostIp}:${p.hostPort}: it ${why}; choose another host port`));
      });
      server.listen({ host: hostIp, port: p.hostPort, exclusive: true }, resolve);
    });
    server.on('error', () => {});
    const addr = server.address();
    const hostPort = typeof addr === 'object' && addr ? addr.port : p.hostPort;
    const bound: BoundPort = { hostIp, hostPort, guestPort: p.guestPort, protocol: 'tcp' };
    this.listeners.set(key(hostIp, hostPort), { port: bound, server, sockets });
    return bound;
  }

  /** Closes the listener and the connections it carries. */
  remove(hostPort: number, hostIp = '127.0.0.1'): BoundPort {
    const l = this.listeners.get(key(hostIp, hostPort));
    if (!l) throw new VmboxError('notFound', `no published port ${hostIp}:${hostPort}; see \`vmbox port ls\``);
    this.listeners.delete(key(hostIp, hostPort));
    l.server.close();
    for (const s of l.sockets) s.destroy();
    return l.port;
  }

  close(): void {
    for (const l of [...this.listeners.values()]) this.remove(l.port.hostPort, l.port.hostIp);
  }

  private accept(port: BoundPort, socket: Socket, sockets: Set<Socket>): void {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => sockets.delete(socket));
    this.dial(port.guestPort).then(
      (guest) => {
        if (socket.destroyed) return guest.destroy();
        relay(socket, guest, this.bandwidth, (bytes, err) => this.onInbound(port, bytes, err));
      },
      (err: Error) => {
        this.onInbound(port, { in: 0, out: 0 }, err.message);
        socket.resetAndDestroy();
      },
    );
  }
}

function key(ip: string, port: number): string {
  return `${ip}:${port}`;
}
