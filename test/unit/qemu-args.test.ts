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
    assert.deepEqual(after(args, '-M'), ['microvm,acpi=off,x-option-roms=off']);
    assert.ok(args.includes('-no-reboot'));
    assert.ok(args.includes('-nodefaults'));
  });

  it('sizes the VM from the spec', () => {
    assert.deepEqual(after(args, '-smp'), ['2']);
    assert.deepEqual(after(args, '-m'), ['768M']);
  });

  it('uses multi-threaded TCG and a full CPU model under TCG', () => {
    assert.deepEqual(after(args, '-accel'), ['tcg,thread=multi']);
    assert.deepEqual(after(args, '-cpu'), ['max,-erms,-fsrm']);
    const kvm = buildQemuArgs({ ...spec, accel: 'kvm' });
    assert.deepEqual(after(kvm, '-accel'), ['kvm']);
  });

  it('passes the kernel, initrd and a command line that reboots on power-off and panic, and skips the timer check a starved vCPU can fail', () => {
    assert.deepEqual(after(args, '-kernel'), ['/k/vmlinux']);
    assert.deepEqual(after(args, '-initrd'), ['/k/initrd']);
    const cmdline = after(args, '-append')[0] ?? '';
    for (const word of ['console=ttyS0', 'reboot=t', 'panic=-1', 'no_timer_check', 'vmbox.hostname=h1'])
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
});
