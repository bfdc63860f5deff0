/** A small seeded PRNG (xoshiro128**): fuzz runs are reproducible from their seed. */
export class Rng {
  private a: number; private b: number; private c: number; private d: number;

  constructor(seed: number) {
    // splitmix32 spreads the seed over the four words of state.
    let s = seed >>> 0;
    const next = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next(); this.b = next(); this.c = next(); this.d = next();
  }

  u32(): number {
    const r = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a; this.d ^= this.b; this.b ^= this.c; this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return r;
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

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
