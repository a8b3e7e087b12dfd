import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import { VmDiedError } from '../../src/errors.js';
import { encodeFrame, FRAME_HEADER, Kind, MAX_PAYLOAD } from '../../src/guest/frame.js';
import { waitFor } from '../fixtures/home.js';
import { sharedRuntime, sharedSandbox } from './helpers.js';

describe('faults', () => {
  const sbx = sharedSandbox();
  const rt = sharedRuntime();

  it('closes only the channel of a malformed frame; the agent keeps serving', async () => {
    const s = sbx();
    const agent = s.machine().agent;
    const victim = s.exec(['sleep', '30']);
    const bystander = s.run(['sh', '-c', 'sleep 1; echo still here']);
    await victim.pid;
    // An oversized frame on the victim's channel: the agent skips it and fails that channel.
    const header = Buffer.alloc(FRAME_HEADER);
    header.writeUInt32BE(MAX_PAYLOAD + 100, 0);
    header.writeUInt8(Kind.stdin, 4);
    header.writeUInt32BE(victim.channel, 5);
    agent.send(Buffer.concat([header, Buffer.alloc(MAX_PAYLOAD + 100, 0x41)]));
    await assert.rejects(victim.exit, { code: 'protocolError' });
    // A request whose JSON is malformed fails its own channel only. (On the victim's channel, which
    // the host closed: the agent's answer is a late frame to it, not one for a channel never opened.)
    agent.send(encodeFrame(Kind.open, victim.channel, Buffer.from('{"op": "exec", "argv": [')));
    assert.equal((await bystander).stdout, 'still here\n');
    await agent.ping();
    const after = await s.run(['echo', 'ok']);
    assert.equal(after.stdout, 'ok\n');
    // The victim's process tree was ended with its channel.
    const ps = await s.run(['sh', '-c', 'ps -o args | grep "sleep 3[0]" || true']);
    assert.equal(ps.stdout, '');
  });

  it('reports a VM killed mid-command as a VM death, with the console', async () => {
    const s = await rt().create({});
    const { vm, agent } = s.machine();
    try {
      const p = s.exec(['sleep', '300']);
      await p.pid;
      process.kill(vm.pid, 'SIGKILL');
      await assert.rejects(p.exit, (err: unknown) => {
        assert.ok(err instanceof VmDiedError, String(err));
        assert.equal(err.code, 'vmDied');
        assert.match(err.message, /VM died/);
        return true;
      });
      await assert.rejects(agent.ping(), { code: 'vmDied' });
      // The runtime saw it die and says how.
      assert.ok(await waitFor(() => rt().manager.get(s.id).state === 'failed'), rt().manager.get(s.id).state);
      assert.match(rt().manager.get(s.id).reason ?? '', /killed by SIGKILL/);
    } finally {
      await s.remove();
    }
    assert.equal(existsSync(s.dir), false, 'the sandbox directory is removed');
  });

  it('refuses an unknown image and bad resources before booting anything', async () => {
    await assert.rejects(rt().create({ image: 'No-Such-Image' }), { code: 'imageNotFound', message: /No-Such-Image/ });
    await assert.rejects(rt().create({ cpus: 0 }), { code: 'invalidSpec', message: /cpus/ });
    await assert.rejects(rt().create({ memoryMib: 32 }), { code: 'invalidSpec', message: /memoryMib/ });
    assert.deepEqual(rt().manager.list(), [], 'nothing is left of the refused creates');
  });
});
