// VirglService: a dead render server is replaced, at most 5 times a minute (a guest that crashes
// the library in a loop must not make the daemon fork in a loop). Needs the compiled render
// server (see virgl-component.test.ts).
import { afterAll, describe, expect, it } from 'vitest';
import { VirglService } from '../../src/renderers/virgl/service.js';
import type { VirglComponent } from '../../src/renderers/virgl/component.js';

let service: VirglService | null = null;
afterAll(async () => {
  await service?.close();
});

async function replaced(s: VirglService, old: VirglComponent, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (s.current !== old && !s.current.lost) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

describe('VirglService', () => {
  it('restarts a killed render server, five times a minute at most', async () => {
    const s = (service = await VirglService.start({ capsets: ['virgl'] }));
    const pids = new Set<number>();
    for (let i = 0; i < 5; i++) {
      const old = s.current;
      pids.add(old.pid!);
      process.kill(old.pid!, 'SIGKILL');
      expect(await replaced(s, old, 10_000), `restart ${i + 1}`).toBe(true);
      expect(await s.current.fence(0)).toBe(0);
    }
    expect(pids.size).toBe(5);
    expect(s.losses).toBe(5);
    // The sixth death within the minute: no new server for now, and the lost one refuses work.
    const old = s.current;
    process.kill(old.pid!, 'SIGKILL');
    expect(await replaced(s, old, 2000)).toBe(false);
    expect(s.current.lost).toBe(true);
    expect(await s.current.fence(0)).toBe(-19); // ENODEV
    expect(s.capsets().map((c) => c.name)).toEqual(['virgl']);
  });

  it('starts nothing after close()', async () => {
    const s = await VirglService.start({ capsets: ['virgl'] });
    const first = s.current;
    await s.close();
    expect(first.pid).toBeNull();
    expect(await replaced(s, first, 500)).toBe(false);
  });
});
