// Command-line mapping of the virglrenderer options (exit codes and messages: test/integration/cli.test.ts).
import { describe, it, expect } from 'vitest';
import { parseOptions } from '../../src/cli/options.js';
import { VirglFlags as F } from '../../src/native.js';

const parse = (...args: string[]) => parseOptions(['--socket-path', '/tmp/x.sock', ...args], '0.0.0');

describe('options: virglrenderer mode', () => {
  it('defaults to 2D without capsets, and to both capsets with EGL surfaceless in virgl mode', () => {
    expect(parse()).toMatchObject({ gpuMode: '2d', capsets: [] });
    const v = parse('--gpu-mode', 'virglrenderer');
    expect(v).toMatchObject({ gpuMode: 'virglrenderer', capsets: ['virgl', 'virgl2'] });
    expect(v.virglFlags).toBe(F.USE_EGL | F.USE_SURFACELESS | F.THREAD_SYNC);
  });

  it('takes --virgl (libvirt) as virglrenderer mode, and --render-node', () => {
    expect(parse('--virgl', '--render-node', '/dev/dri/renderD128')).toMatchObject({ gpuMode: 'virglrenderer', renderNode: '/dev/dri/renderD128' });
  });

  it('maps --use-* to init flags', () => {
    expect(parse('-g', 'virglrenderer', '--use-gles').virglFlags).toBe(F.USE_EGL | F.USE_SURFACELESS | F.USE_GLES | F.THREAD_SYNC);
    expect(parse('-g', 'virglrenderer', '--use-surfaceless', 'false').virglFlags).toBe(F.USE_EGL | F.THREAD_SYNC);
    expect(parse('-g', 'virglrenderer', '--use-glx').virglFlags).toBe(F.USE_GLX | F.THREAD_SYNC);
    expect(parse('-g', 'virglrenderer', '-c', 'virgl2').capsets).toEqual(['virgl2']);
  });
});

describe('options: --host-visible-size', () => {
  it('defaults to 1G; takes 0 for none and powers of two from 1M to 1T', () => {
    expect(parse().hostVisibleSize).toBe(2 ** 30);
    expect(parse('--host-visible-size', '0').hostVisibleSize).toBe(0);
    expect(parse('--host-visible-size', '4M').hostVisibleSize).toBe(4 * 2 ** 20);
    expect(parse('--host-visible-size', '1T').hostVisibleSize).toBe(2 ** 40);
    expect(parse('--host-visible-size', '8589934592').hostVisibleSize).toBe(2 ** 33);
  });

  it('refuses sizes a BAR cannot have', () => {
    expect(() => parse('--host-visible-size', '3M')).toThrow(/--host-visible-size: 3M is not a power of two/);
    expect(() => parse('--host-visible-size', '2T')).toThrow(/power of two from 1M to 1T/);
    expect(() => parse('--host-visible-size', '64k')).toThrow(/--host-visible-size: 64k is below the 1 MiB minimum/);
    expect(() => parse('--host-visible-size', 'lots')).toThrow(/--host-visible-size: cannot parse/);
  });
});

describe('options: --poll-us', () => {
  it('defaults to 50 µs; takes 0 to never poll; refuses fractions, negatives and more than 10 ms', () => {
    expect(parse().pollUs).toBe(50);
    expect(parse('--poll-us', '0').pollUs).toBe(0);
    expect(parse('--poll-us', '10000').pollUs).toBe(10000);
    for (const bad of ['-1', '1.5', '10001']) expect(() => parse('--poll-us', bad)).toThrow(/--poll-us/);
  });
});
