import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/** Absolute path of a file in the package, the same from src/ (tests) and dist/src/ (built). */
export function packagePath(relative: string): string {
  if (!root) {
    let dir = dirname(fileURLToPath(import.meta.url));
    while (!existsSync(join(dir, 'package.json'))) {
      const up = dirname(dir);
      if (up === dir) throw new Error('vhost-gpu: cannot find the package root');
      dir = up;
    }
    root = dir;
  }
  return join(root, relative);
}
