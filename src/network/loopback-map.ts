import dnsPacket from 'dns-packet';
import { cidrContains, formatIPv4, parseCidr, parseIPv4, tryParseIPv4 } from './addresses.js';

/**
 * A guest's 127.0.0.0/8 is its own loopback, so a host loopback address that DNS
 * answers for an allowed name (a service on this machine, named in the policy)
 * cannot be handed to the guest as it is: it would reach the guest itself. Each
 * such address is given a stand-in from a link-local block the guest sends to the
 * host like any other destination; the host turns it back before deciding.
 */
const LOOPBACK = parseCidr('127.0.0.0/8');
/** Stand-ins: 169.254.127.1 – .254 (link-local, never routed; clear of the host alias and of clouds' 169.254.169.x). */
const BASE = parseIPv4('169.254.127.0');
const SLOTS = 254;

export class LoopbackMap {
  private readonly toGuest = new Map<string, string>();
  private readonly toHost = new Map<string, string>();

  /** The stand-in for a host loopback address (allocated once; undefined when the block is used up). */
  guestFor(hostIp: string): string | undefined {
    const known = this.toGuest.get(hostIp);
    if (known || this.toGuest.size >= SLOTS) return known;
    const guest = formatIPv4(BASE + this.toGuest.size + 1);
    this.toGuest.set(hostIp, guest);
    this.toHost.set(guest, hostIp);
    return guest;
  }

  /** The host address a guest destination stands for; the address itself when it stands for none. */
  hostFor(guestIp: string): string {
    return this.toHost.get(guestIp) ?? guestIp;
  }

  /** A DNS response with its loopback A records replaced by stand-ins (the same bytes when it has none). */
  rewrite(response: Buffer): Buffer {
    let packet: dnsPacket.Packet;
    try {
      packet = dnsPacket.decode(response);
    } catch {
      return response;
    }
    let changed = false;
    for (const a of packet.answers ?? []) {
      if (a.type !== 'A') continue;
      const ip = tryParseIPv4(a.data);
      if (ip === undefined || !cidrContains(LOOPBACK, ip)) continue;
      const guest = this.guestFor(a.data);
      if (!guest) continue;
      a.data = guest;
      changed = true;
    }
    return changed ? dnsPacket.encode(packet) : response;
  }
}
