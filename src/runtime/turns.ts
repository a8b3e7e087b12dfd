/**
 * One operation at a time per sandbox on its VM: a snapshot, a pause, a resume
 * and a stop of one sandbox never overlap (each drives the VM's one migration or
 * its end). Each runs once those asked before it settled, and checks the state
 * it finds then.
 */
export class Turns {
  /** Per sandbox, the end of the last operation asked. */
  private readonly last = new Map<string, Promise<unknown>>();

  run<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const before = this.last.get(id) ?? Promise.resolve();
    const mine = before.catch(() => {}).then(fn);
    const settled = mine.catch(() => {});
    this.last.set(id, settled);
    settled.then(() => {
      if (this.last.get(id) === settled) this.last.delete(id);
    });
    return mine;
  }
}
