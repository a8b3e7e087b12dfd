import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { VmSpec } from '../../src/vmm/provider.js';
import { buildQemuArgs } from '../../src/vmm/qemu/args.js';

const spec: VmSpec = {
  id: 'abc',
  cpus: 2,
  memoryMib: 768,
  accel: 'tcg',
  kernelPath: '/k/vmlinux',
  initrdPath: '/k/initrd',
  kernelArgs: ['vmbox.hostname=h1'],
  rootDisk: { path: '/s/rootfs.qcow2', format: 'qcow2' },
  runDir: '/s',
};

const after = (args: string[], flag: string) => args.filter((_, i) => args[i - 1] === flag);

describe('buildQemuArgs', () => {
  const args = buildQemuArgs(spec);

  it('builds a microvm without ACPI or reboot', () => {
    assert.deepEqual(after(args, '-M'), ['microvm,acpi=off,x-option-roms=off,memory-backend=mem']);
    assert.ok(args.includes('-no-reboot'));
    assert.ok(args.includes('-nodefaults'));
  });

  it('sizes the VM from the spec', () => {
    assert.deepEqual(after(args, '-smp'), ['2']);
    assert.deepEqual(after(args, '-m'), ['768M']);
  });

  it('uses multi-threaded TCG and a full CPU model under TCG', () => {
    assert.deepEqual(after(args, '-accel'), ['tcg,thread=multi,tb-size=128']);
    assert.deepEqual(after(args, '-cpu'), ['max,-erms,-fsrm']);
    const kvm = buildQemuArgs({ ...spec, accel: 'kvm' });
    assert.deepEqual(after(kvm, '-accel'), ['kvm']);
  });

  it('passes the kernel, initrd and a command line that reboots on power-off and panic, and skips the timer check a starved vCPU can fail', () => {
    assert.deepEqual(after(args, '-kernel'), ['/k/vmlinux']);
    assert.deepEqual(after(args, '-initrd'), ['/k/initrd']);
    const cmdline = after(args, '-append')[0] ?? '';
    for (const word of ['console=ttyS0', 'reboot=t', 'panic=-1', 'no_timer_check', 'tsc=reliable', 'vmbox.hostname=h1'])
      assert.ok(cmdline.split(' ').includes(word), word);
  });

  it('serves the agent port on a socket in the run dir and logs the console to a file', () => {
    assert.deepEqual(after(args, '-chardev'), ['socket,id=agent,path=/s/agent.sock,server=on,wait=off']);
    assert.ok(after(args, '-device').includes('virtserialport,chardev=agent,name=vmbox.agent'));
    assert.deepEqual(after(args, '-serial'), ['file:/s/console.log']);
    assert.deepEqual(after(args, '-qmp'), ['unix:/s/qmp.sock,server=on,wait=off']);
  });

  it('attaches the overlay as a virtio-blk root, and no disk when none is given', () => {
    assert.ok(after(args, '-drive')[0]?.startsWith('id=root,file=/s/rootfs.qcow2,format=qcow2,if=none'));
    assert.ok(after(args, '-device').includes('virtio-blk-device,drive=root'));
    const diskless = buildQemuArgs({ ...spec, rootDisk: undefined });
    assert.equal(after(diskless, '-drive').length, 0);
  });

  it('shows host directories over 9p (read-only when asked), further disks, and NICs on a host socket', () => {
    const more = buildQemuArgs({
      ...spec,
      extraDisks: [{ path: '/v/data.img', format: 'raw', readOnly: true }],
      shares: [{ tag: 'work', hostPath: '/h/src', readOnly: true }],
      nics: [{ id: 'net0', mac: '52:54:00:12:34:56', backend: { kind: 'stream', socketPath: '/s/net.sock' } }],
    });
    assert.ok(after(more, '-drive').includes('id=disk0,file=/v/data.img,format=raw,if=none,discard=unmap,read-only=on'));
    assert.deepEqual(after(more, '-fsdev'), ['local,id=fs0,path=/h/src,security_model=mapped-xattr,readonly=on']);
    assert.ok(after(more, '-device').includes('virtio-9p-device,fsdev=fs0,mount_tag=work'));
    assert.deepEqual(after(more, '-netdev'), ['stream,id=net0,server=off,addr.type=unix,addr.path=/s/net.sock']);
    assert.ok(after(more, '-device').includes('virtio-net-device,netdev=net0,mac=52:54:00:12:34:56'));
    // None of it unless asked: a sandbox has no NIC and no share by default.
    assert.equal(after(args, '-netdev').length + after(args, '-fsdev').length, 0);
  });

  it('keeps RAM in a file when asked (shared, or private for a clone), and waits for a saved state to restore', () => {
    const saved = buildQemuArgs({ ...spec, memoryFile: { path: '/s/mem', shared: true } });
    assert.match(after(saved, '-M')[0] ?? '', /,memory-backend=mem$/);
    assert.ok(after(saved, '-object').includes(`memory-backend-file,id=mem,size=${spec.memoryMib}M,mem-path=/s/mem,share=on`));
    const clone = buildQemuArgs({ ...spec, memoryFile: { path: '/s/mem', shared: false }, restoreFrom: '/s/state' });
    assert.ok(after(clone, '-object')[0]?.endsWith('share=off'));
    assert.deepEqual(after(clone, '-incoming'), ['defer']);
    assert.equal(after(args, '-incoming').length, 0);
    // Without a file the RAM is anonymous, under the same backend id (states move between the two).
    assert.deepEqual(after(args, '-object'), [`memory-backend-ram,id=mem,size=${spec.memoryMib}M`]);
    assert.match(after(args, '-M')[0] ?? '', /,memory-backend=mem$/);
  });
});
