// The daemon as libvirt and people run it: options, capabilities, exit codes, signals, --fd.
import { describe, it, expect } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packagePath } from '../../src/package-path.js';
import { native } from '../../src/native.js';
import { parseSize } from '../../src/cli/options.js';

const BIN = packagePath('bin/vhost-gpu.js');
const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 20_000 });

function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = () => (cond() ? resolve() : Date.now() > end ? reject(new Error('timeout')) : setTimeout(tick, 20));
    tick();
  });
}

describe('command line', () => {
  it('prints QEMU-style capabilities, listing virgl only because virglrenderer initialises here', () => {
    const r = run('--print-capabilities');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ type: 'gpu', features: ['virgl', 'render-node'] });
  });

  it('prints help and version', () => {
    const h = run('--help');
    expect(h.status).toBe(0);
    expect(h.stdout).toMatch(/--socket-path/);
    expect(h.stdout).toMatch(/--max-host-memory/);
    const v = run('--version');
    expect(v.status).toBe(0);
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  const bad: [string[], RegExp][] = [
    [[], /one of --socket-path or --fd is required/],
    [['--socket-path', '/tmp/a', '--fd', '3'], /mutually exclusive/],
    [['--socket-path', '/tmp/a', '--gpu-mode', 'nope'], /gpu-mode/],
    [['--socket-path', '/tmp/a', '--capset', 'virgl'], /--capset: "virgl" is not available in gpu-mode 2d/],
    [['--socket-path', '/tmp/a', '--max-host-memory', 'lots'], /--max-host-memory: cannot parse/],
    [['--socket-path', '/tmp/a', '--bogus'], /Unknown argument/],
    [['--fd', '-4'], /--fd/],
    [['--socket-path', '/tmp/a', '--virgl', '--gpu-mode', '2d'], /--virgl contradicts --gpu-mode 2d/],
    [['--socket-path', '/tmp/a', '--gpu-mode', 'virglrenderer', '--use-glx', '--use-egl'], /mutually exclusive/],
    [['--socket-path', '/nonexistent-dir/x.sock'], /listen on \/nonexistent-dir\/x.sock failed/],
  ];
  for (const [args, msg] of bad) {
    it(`exits 1 with a clear message for ${JSON.stringify(args)}`, () => {
      const r = run(...args);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(msg);
    });
  }

  it('parses sizes', () => {
    expect(parseSize('1G')).toBe(2 ** 30);
    expect(parseSize('512M')).toBe(512 * 2 ** 20);
    expect(parseSize('2GiB')).toBe(2 * 2 ** 30);
    expect(parseSize('1073741824')).toBe(2 ** 30);
    expect(() => parseSize('10')).toThrow(/minimum/);
  });

  it('listens on --socket-path and exits 0 on SIGTERM, removing the socket', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vhost-gpu-cli-'));
    const sock = join(dir, 'gpu.sock');
    const p = spawn(process.execPath, [BIN, '--socket-path', sock], { stdio: ['ignore', 'ignore', 'pipe'] });
    try {
      await waitFor(() => existsSync(sock), 10_000);
      const fd = native().connectUnix(sock);
      expect(fd).toBeGreaterThanOrEqual(0);
      native().close(fd);
      const code = new Promise<number | null>((resolve) => p.on('exit', (c) => resolve(c)));
      p.kill('SIGTERM');
      expect(await code).toBe(0);
      expect(existsSync(sock)).toBe(false);
    } finally {
      p.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('serves an inherited --fd and exits 0 when the front-end closes it', async () => {
    const pair = native().socketPair();
    if (typeof pair === 'number') throw new Error(`socketpair: ${pair}`);
    const [ours, theirs] = pair;
    const p = spawn(process.execPath, [BIN, '--fd', '3'], { stdio: ['ignore', 'ignore', 'pipe', theirs] });
    native().close(theirs);
    const code = new Promise<number | null>((resolve) => p.on('exit', (c) => resolve(c)));
    // GET_FEATURES must be answered on the inherited socket.
    const req = new Uint8Array(12);
    new DataView(req.buffer).setUint32(0, 1, true);
    new DataView(req.buffer).setUint32(4, 1, true);
    expect(native().sendMsg(ours, [req], null)).toBe(12);
    expect(native().pollFd(ours, native().POLLIN, 10_000) & native().POLLIN).toBeTruthy();
    const reply = new Uint8Array(20);
    const fds = new Int32Array(9);
    expect(native().recvMsg(ours, reply, 0, 20, fds)).toBe(20);
    const v = new DataView(reply.buffer);
    expect(v.getUint32(0, true)).toBe(1);
    expect(v.getUint32(4, true)).toBe(0x5);
    expect(v.getBigUint64(12, true) & (1n << 30n)).toBe(1n << 30n);
    native().close(ours);
    expect(await code).toBe(0);
  });
});
