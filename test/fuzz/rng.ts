import { seededRandom } from '../frontend/connection-cycles.js';

/** Fuzz-input helpers over the frontend's seeded generator: fuzz runs are reproducible from their seed. */
export class Rng {
  private readonly next: () => number;

  constructor(seed: number) {
    this.next = seededRandom(seed);
  }

  u32(): number {
    return (this.next() * 0x1_0000_0000) >>> 0;
  }

  /** 0 <= x < n (n <= 2^32). */
  below(n: number): number {
    return Math.floor((this.u32() / 0x1_0000_0000) * n);
  }

  chance(p: number): boolean {
    return this.u32() < p * 0x1_0000_0000;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }

  fill(b: Uint8Array, off = 0, len = b.length - off): void {
    for (let i = 0; i < len; i++) b[off + i] = this.u32() & 0xff;
  }

  /** A u32 that is often an edge case: 0, 1, powers of two and their neighbours, all ones. */
  edgy(): number {
    switch (this.below(6)) {
      case 0: return 0;
      case 1: return this.below(64);
      case 2: { const p = 2 ** this.below(32); return (p + this.pick([-1, 0, 1])) >>> 0; }
      case 3: return 0xffffffff - this.below(16);
      default: return this.u32();
    }
  }
}
