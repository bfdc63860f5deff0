/**
 * Shrinking a reproducer that is a list (messages, commands) while it still produces a finding
 * of the same kind: first the shortest failing prefix (binary search), then ddmin-style removal
 * of ever smaller chunks. Each step replays the candidate against a fresh target.
 */
import type { Finding } from './target.js';

export async function minimize<T>(items: readonly T[], kind: Finding['kind'], fails: (items: T[]) => Promise<Finding[]>, progress: (l: string) => void): Promise<T[]> {
  const still = async (c: T[]) => (await fails(c)).some((f) => f.kind === kind);
  let cur = [...items];
  if (!(await still(cur))) throw new Error('the reproducer no longer produces a finding of that kind');
  // Shortest failing prefix.
  let lo = 1, hi = cur.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (await still(cur.slice(0, mid))) hi = mid; else lo = mid + 1;
    progress(`prefix search: ${lo}..${hi} of ${cur.length}`);
  }
  cur = cur.slice(0, hi);
  // Remove chunks, halving their size when nothing can go.
  for (let chunk = Math.max(1, cur.length >>> 1); chunk >= 1; chunk >>>= 1) {
    for (let at = 0; at < cur.length - 1;) {
      const cand = [...cur.slice(0, at), ...cur.slice(at + chunk)];
      if (cand.length > 0 && (await still(cand))) {
        cur = cand;
        progress(`${cur.length} left (chunk ${chunk})`);
      } else at += chunk;
    }
  }
  return cur;
}
