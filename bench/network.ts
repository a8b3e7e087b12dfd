/**
 * Networking numbers, side by side in one run: a download from a host server
 * against the same bytes through the agent's file channel, small requests to the
 * host against the guest's own loopback, DNS lookups, and cold start with the
 * network on against off. Every server is on this machine's loopback.
 */

import { join } from 'node:path';
import type { NetworkPolicyInput } from '../src/spec/network.js';
import type { SandboxSpecInput } from '../src/spec/sandbox.js';
import { startDnsServer } from '../test/fixtures/dns-server.js';
import { buildGuestTool } from '../test/fixtures/guest-tool.js';
import { httpServer } from '../test/fixtures/net-servers.js';
import { testRuntime } from '../test/fixtures/runtime.js';
import { median, percentile, type Row } from './stats.js';

const MIB = 1024 * 1024;

export async function networkBench(runs: number): Promise<Row[]> {
  const server = await httpServer('127.0.0.2');
  const dns = await startDnsServer({ a: { 'bench.test': ['127.0.0.2'] } });
  const rt = await testRuntime();
  const network: NetworkPolicyInput = { allow: ['bench.test'], dnsServers: [dns.address] };
  try {
    const rows: Row[] = [];
    const sbx = await rt.create({ network, memoryMib: 512 });
    const url = `http://bench.test:${server.port}`;

    // 100 MiB: HTTP from the host into the guest against sbx.files' read of a guest file (both to /dev/null's cost).
    await sbx.run(['sh', '-c', `wget -q -O /tmp/f '${url}/big?n=${100 * MIB}'`]);
    const httpMs: number[] = [];
    const filesMs: number[] = [];
    for (let i = 0; i < Math.min(runs, 5); i++) {
      let t = performance.now();
      const r = await sbx.run(['sh', '-c', `wget -q -O /dev/null '${url}/big?n=${100 * MIB}'`], { timeoutMs: 120_000 });
      if (r.exitCode !== 0) throw new Error(`download failed: ${r.stderr}`);
      httpMs.push(performance.now() - t);
      t = performance.now();
      for await (const _ of sbx.machine().agent.readFile('/tmp/f')) {
      }
      filesMs.push(performance.now() - t);
    }
    const mbps = (ms: number[]) => (100 * MIB) / 1e6 / (median(ms) / 1000);
    rows.push(
      {
        metric: 'network: 100 MiB HTTP download into the guest',
        value: mbps(httpMs),
        unit: 'MB/s',
        target: '>= 100',
        note: `${httpMs.length} runs`,
      },
      { metric: 'network: the same 100 MiB through sbx.files.read', value: mbps(filesMs), unit: 'MB/s' },
    );

    // New connection + small GET + response, timed inside the guest by one process (no fork per sample):
    // to the host through the policy, against the same to a server on the guest's own loopback.
    await sbx.machine().agent.writeFile('/usr/local/bin/net-probe', buildGuestTool(join(import.meta.dirname, 'guest', 'net-probe.c')), {
      mode: 0o755,
      mkdirs: true,
    });
    sbx.exec(['net-probe', 'serve', '8001']);
    const micros = async (argv: string[]) => {
      const r = await sbx.run(['net-probe', ...argv], { timeoutMs: 300_000 });
      if (r.exitCode !== 0) throw new Error(`net-probe ${argv.join(' ')}: ${r.stderr}`);
      return r.stdout
        .trim()
        .split('\n')
        .map((l) => Number(l) / 1000);
    };
    const host = await micros(['get', 'bench.test', String(server.port), '200']);
    const local = await micros(['get', '127.0.0.1', '8001', '200']);
    rows.push(
      {
        metric: 'network: new connection + small GET to the host',
        ...central(host),
        unit: 'ms',
      },
      { metric: 'network: the same to the guest’s own loopback', ...central(local), unit: 'ms' },
      {
        metric: 'network: GET overhead over the guest loopback',
        value: central(host).value - central(local).value,
        unit: 'ms',
        target: '<= 3',
      },
    );

    // DNS: getaddrinfo of an allowed name, answered by the host through the agent.
    const lookups = await micros(['dns', 'bench.test', '200']);
    rows.push({
      metric: 'network: DNS lookup of an allowed name',
      ...central(lookups),
      unit: 'ms',
      target: '<= 2',
    });
    await sbx.remove();

    // Cold start: network on against off, alternating.
    const on: number[] = [];
    const off: number[] = [];
    for (let i = 0; i < runs; i++) {
      const sides: Array<[SandboxSpecInput, number[]]> = [
        [{ network }, on],
        [{}, off],
      ];
      for (const [spec, into] of sides) {
        const t = performance.now();
        const s = await rt.create(spec);
        into.push(performance.now() - t);
        await s.remove();
      }
    }
    rows.push(
      { metric: 'network: cold create, network on', value: median(on), unit: 'ms', note: `${runs} runs` },
      { metric: 'network: cold create, network off', value: median(off), unit: 'ms' },
      { metric: 'network: cold create on / off', value: median(on) / median(off), unit: 'x', target: '<= 1.05' },
    );
    return rows;
  } finally {
    await rt.close();
    await server.close();
    await dns.close();
  }
}

/**
 * The p50 of a guest's timings, or their mean when its clock ticks coarsely (a
 * guest that fell back to the jiffies clocksource reads time in 4 ms steps).
 */
function central(samples: number[]): { value: number; note: string } {
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  const coarse = new Set(samples).size <= 10;
  const spread = `p50 ${median(samples).toFixed(2)}, p90 ${percentile(samples, 90).toFixed(2)}, mean ${mean.toFixed(2)} ms of ${samples.length}`;
  return coarse ? { value: mean, note: `mean (the guest clock is coarse this boot); ${spread}` } : { value: median(samples), note: spread };
}
