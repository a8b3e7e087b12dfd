import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { QmpParser } from '../../src/vmm/qemu/qmp.js';

describe('QmpParser', () => {
  it('splits greeting, replies and events across chunk boundaries', () => {
    const p = new QmpParser();
    const text =
      '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": []}}\r\n' +
      '{"return": {}, "id": 1}\r\n' +
      '{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "SHUTDOWN", "data": {"guest": true}}\r\n';
    const out = [...p.push(text.slice(0, 50)), ...p.push(text.slice(50, 120)), ...p.push(text.slice(120))];
    assert.equal(out.length, 3);
    assert.ok('QMP' in (out[0] as object));
    assert.deepEqual(out[1], { return: {}, id: 1 });
    assert.equal((out[2] as { event: string }).event, 'SHUTDOWN');
  });

  it('parses errors', () => {
    const [m] = new QmpParser().push('{"error": {"class": "CommandNotFound", "desc": "nope"}, "id": 4}\n');
    assert.deepEqual(m, { error: { class: 'CommandNotFound', desc: 'nope' }, id: 4 });
  });

  it('rejects a line that is not JSON', () => {
    assert.throws(() => new QmpParser().push('garbage\n'), /not JSON/);
  });
});
