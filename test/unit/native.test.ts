import { existsSync, fstatSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { FdKind, native, type MapHandle } from '../../src/native.js';
import { packagePath } from '../../src/package-path.js';

const n = native();
const ENOENT = -2, EBADF = -9, EFAULT = -14, EEXIST = -17, ENAMETOOLONG = -36, EADDRINUSE = -98;

const openFds = () => readdirSync('/proc/self/fd').length;
const isNonBlocking = (fd: number) =>
  (parseInt(/flags:\s+(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1], 8) & 0o4000) !== 0;
const mapped = (addr: bigint) => readFileSync('/proc/self/maps', 'utf8').includes(`${addr.toString(16)}-`);
const pair = (): [number, number] => {
  const p = n.socketPair();
  if (typeof p === 'number') throw new Error(`socketPair: ${p}`);
  return p;
};
const handle = (h: MapHandle | number): MapHandle => {
  if (typeof h === 'number') throw new Error(`mmap: ${h}`);
  return h;
};
const bytes = (v: ArrayBuffer | number): Uint8Array => {
  if (typeof v === 'number') throw new Error(`view: ${v}`);
  return new Uint8Array(v);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const tmp = mkdtempSync(join(tmpdir(), 'vhost-gpu-native-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('constants', () => {
  it('match the platform', () => {
    expect([n.READABLE, n.WRITABLE]).toEqual([1, 2]);
    expect([n.POLLIN, n.POLLOUT, n.POLLERR, n.POLLHUP]).toEqual([1, 4, 8, 16]);
    expect([n.EINTR, n.EAGAIN, n.EINVAL, n.EPIPE]).toEqual([4, 11, 22, 32]);
  });
});

describe('socketPair + sendMsg/recvMsg', () => {
  it('gathers buffers and passes an eventfd that works on the other side', () => {
    const [a, b] = pair();
    const efd = n.eventfd(0, true);
    expect(n.sendMsg(a, [Uint8Array.of(1, 2, 3), new Uint8Array(0), Uint8Array.of(4, 5)], [efd])).toBe(5);
    const buf = new Uint8Array(16);
    const fds = new Int32Array(9);
    expect(n.recvMsg(b, buf, 2, 10, fds)).toBe(5);
    expect([...buf.subarray(2, 7)]).toEqual([1, 2, 3, 4, 5]);
    expect(fds[0]).toBe(1);
    const got = fds[1];
    expect(got).not.toBe(efd);
    expect(n.eventfdWrite(got, 7)).toBe(0);
    expect(n.eventfdRead(efd)).toBe(7);
    for (const fd of [a, b, efd, got]) expect(n.close(fd)).toBe(0);
  });

  it('closes fds that do not fit in fdsOut', () => {
    const [a, b] = pair();
    const efds = [n.eventfd(0, true), n.eventfd(0, true), n.eventfd(0, true)];
    const before = openFds();
    expect(n.sendMsg(a, [Uint8Array.of(9)], efds)).toBe(1);
    const fds = new Int32Array(2);
    expect(n.recvMsg(b, new Uint8Array(4), 0, 4, fds)).toBe(1);
    expect(fds[0]).toBe(1);
    expect(openFds()).toBe(before + 1); // only the kept one is new
    for (const fd of [a, b, fds[1], ...efds]) n.close(fd);
  });

  it('reports EOF, EAGAIN and EPIPE as numbers', () => {
    const [a, b] = pair();
    expect(n.setNonBlocking(b, true)).toBe(0);
    expect(n.recvMsg(b, new Uint8Array(4), 0, 4, new Int32Array(1))).toBe(-n.EAGAIN);
    n.close(a);
    expect(n.recvMsg(b, new Uint8Array(4), 0, 4, new Int32Array(1))).toBe(0);
    expect(n.sendMsg(b, [Uint8Array.of(1)], null)).toBe(-n.EPIPE); // MSG_NOSIGNAL: no SIGPIPE
    n.close(b);
    expect(n.recvMsg(b, new Uint8Array(4), 0, 4, new Int32Array(1))).toBe(EBADF);
  });

  it('validates arguments', () => {
    const [a, b] = pair();
    const buf = new Uint8Array(8);
    expect(n.sendMsg(a, [buf], Array.from({ length: 29 }, () => a))).toBe(-n.EINVAL); // Wayland's 28 at most
    expect(n.sendMsg(a, [], [a])).toBe(-n.EINVAL);
    expect(n.recvMsg(b, buf, 4, 5, new Int32Array(1))).toBe(-n.EINVAL);
    expect(n.recvMsg(b, buf, 0.5, 1, new Int32Array(1))).toBe(-n.EINVAL);
    expect(n.recvMsg(b, buf, 0, 1, new Int32Array(0))).toBe(-n.EINVAL);
    expect(() => n.sendMsg(a, 'x' as never, null)).toThrow(TypeError);
    expect(() => n.sendMsg(a, [[1]] as never, null)).toThrow(TypeError);
    expect(() => n.recvMsg(b, buf, 0, 1, new Uint32Array(2) as never)).toThrow(TypeError);
    expect(() => n.close('3' as never)).toThrow(TypeError);
    n.close(a);
    n.close(b);
  });

  it('read, pollFd and dup', () => {
    const [a, b] = pair();
    expect(n.pollFd(b, n.POLLIN, 0)).toBe(0);
    n.sendMsg(a, [Uint8Array.of(1, 2, 3)], null);
    expect(n.pollFd(b, n.POLLIN, -1) & n.POLLIN).toBeTruthy();
    const d = n.dup(b);
    expect(d).toBeGreaterThan(2);
    const buf = new Uint8Array(4);
    expect(n.read(d, buf, 1, 3)).toBe(3);
    expect([...buf]).toEqual([0, 1, 2, 3]);
    expect(n.read(d, buf, 2, 3)).toBe(-n.EINVAL);
    expect(n.write(a, Uint8Array.of(9, 8, 7), 1, 2)).toBe(2);
    expect(n.read(b, buf, 0, 4)).toBe(2);
    expect([...buf.subarray(0, 2)]).toEqual([8, 7]);
    expect(n.write(a, buf, 3, 2)).toBe(-n.EINVAL);
    for (const fd of [a, b, d]) n.close(fd);
  });

  it('describeFd tells memory, pipe ends, eventfds and sockets apart', () => {
    const info = new Float64Array(2);
    const mem = n.memfdCreate('describe', 12345), ev = n.eventfd(0, true), ends = new Int32Array(2);
    n.pipeCreate(ends, 4096);
    const [a, b] = pair();
    expect([n.describeFd(mem, info), ...info]).toEqual([FdKind.FILE, 12345, 2]);
    expect([n.describeFd(ends[0], info), info[1]]).toEqual([FdKind.PIPE, 0]);
    expect([n.describeFd(ends[1], info), info[1]]).toEqual([FdKind.PIPE, 1]);
    expect(n.describeFd(ev, info)).toBe(FdKind.EVENTFD);
    expect(n.describeFd(a, info)).toBe(FdKind.SOCKET);
    for (const fd of [mem, ev, ends[0], ends[1], a, b]) n.close(fd);
    expect(n.describeFd(mem, info)).toBe(EBADF);
  });
});

describe('unix listen/connect/accept', () => {
  it('round-trips data', () => {
    const path = join(tmp, 'sock');
    const lfd = n.listenUnix(path, 4);
    expect(lfd).toBeGreaterThan(2);
    expect(n.acceptUnix(lfd)).toBe(-n.EAGAIN);
    const c = n.connectUnix(path);
    expect(c).toBeGreaterThan(2);
    expect(isNonBlocking(c)).toBe(false);
    const s = n.acceptUnix(lfd);
    expect(s).toBeGreaterThan(2);
    expect(isNonBlocking(s)).toBe(true);
    expect(n.sendMsg(c, [Uint8Array.of(42)], null)).toBe(1);
    const buf = new Uint8Array(1);
    expect(n.pollFd(s, n.POLLIN, 1000) & n.POLLIN).toBeTruthy();
    expect(n.recvMsg(s, buf, 0, 1, new Int32Array(1))).toBe(1);
    expect(buf[0]).toBe(42);
    // A live listener is not "stale" (the probe connection lands in its backlog).
    expect(n.listenUnix(path, 4)).toBe(EADDRINUSE);
    for (const fd of [c, s]) n.close(fd);
    const nb = n.connectUnix(path, true); // non-blocking: completes at once into the backlog
    expect(nb).toBeGreaterThan(2);
    expect(isNonBlocking(nb)).toBe(true);
    for (const fd of [nb, lfd]) n.close(fd);
    // The socket file is stale now: listening again removes it.
    const again = n.listenUnix(path, 1);
    expect(again).toBeGreaterThan(2);
    n.close(again);
  });

  it('reports path errors', () => {
    expect(n.listenUnix(join(tmp, 'x'.repeat(120)), 1)).toBe(ENAMETOOLONG);
    expect(n.connectUnix(join(tmp, 'missing'))).toBe(ENOENT);
    const file = join(tmp, 'regular');
    writeFileSync(file, 'keep me');
    expect(n.listenUnix(file, 1)).toBe(EADDRINUSE);
    expect(existsSync(file)).toBe(true); // only socket files are ever unlinked
  });
});

describe('memory', () => {
  it('memfd + mmap + views share the same memory', () => {
    const fd = n.memfdCreate('test', 65536);
    expect(fd).toBeGreaterThan(2);
    expect(n.fdSize(fd)).toBe(65536);
    const m = handle(n.mmap(fd, 65536, 0));
    expect(m.size).toBe(65536);
    const a = bytes(n.view(m.addr, 0, 8192));
    const b = bytes(n.view(m.addr, 1024, 1024));
    a[1024] = 7;
    expect(b[0]).toBe(7);
    b[1] = 8;
    expect(a[1025]).toBe(8);
    expect(bytes(n.view(m.addr + 1025n, 0, 1))[0]).toBe(8); // an address inside the mapping
    // A second mapping of the same memfd, at a file offset.
    const m2 = handle(n.mmap(fd, 4096, 4096));
    const c = bytes(n.view(m2.addr, 0, 4096));
    c[5] = 99;
    expect(a[4096 + 5]).toBe(99);
    a[4096 + 6] = 100;
    expect(c[6]).toBe(100);
    expect(n.unmap(m.addr)).toBe(0);
    expect(n.unmap(m2.addr)).toBe(0);
    n.close(fd);
  });

  it('refuses views outside a live mapping', () => {
    const fd = n.memfdCreate('range', 8192);
    const m = handle(n.mmap(fd, 8192, 0));
    const bad: Array<[bigint, number, number]> = [
      [m.addr, 8182, 11], [m.addr, 0, 8193], [m.addr, 0, 0], [m.addr, -1, 1], [m.addr, 0.5, 1],
      [m.addr, 1, 1.5], [m.addr, 2 ** 53, 1], [m.addr, 0, 2 ** 30 + 1], [m.addr + 8192n, 0, 1],
      [m.addr - 1n, 0, 1], [123n, 0, 1], [-1n, 0, 1], [2n ** 70n, 0, 1],
    ];
    for (const [addr, off, len] of bad) expect(n.view(addr, off, len), `${addr} ${off} ${len}`).toBe(-n.EINVAL);
    expect(bytes(n.view(m.addr, 8191, 1)).length).toBe(1);
    expect(() => n.view(Number(m.addr) as never, 0, 1)).toThrow(TypeError);
    expect(() => n.view(m.addr, '0' as never, 1)).toThrow(TypeError);
    expect(n.unmap(m.addr + 1n)).toBe(-n.EINVAL);
    expect(n.mmap(fd, 8192, 4096)).toBe(-n.EINVAL); // past the end of the file: would SIGBUS
    expect(n.mmap(fd, 0, 0)).toBe(-n.EINVAL);
    expect(n.mmap(fd, 4096, 100)).toBe(-n.EINVAL); // unaligned offset (kernel)
    expect(n.unmap(m.addr)).toBe(0);
    n.close(fd);
  });

  it('keeps memory mapped after unmap until the views are collected', async () => {
    const fd = n.memfdCreate('gc', 4096);
    const m = handle(n.mmap(fd, 4096, 0));
    n.close(fd); // the mapping does not need the fd
    let v: Uint8Array | undefined = bytes(n.view(m.addr, 0, 4096));
    v[10] = 5;
    expect(n.unmap(m.addr)).toBe(0);
    expect(n.unmap(m.addr)).toBe(-n.EINVAL);
    expect(n.view(m.addr, 0, 1)).toBe(-n.EINVAL); // no new views after unmap
    expect(v[10]).toBe(5); // still readable
    expect(mapped(m.addr)).toBe(true);
    v = undefined;
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    for (let i = 0; i < 10 && mapped(m.addr); i++) {
      gc();
      await sleep(10); // Node runs external-buffer finalizers from the loop
    }
    expect(mapped(m.addr)).toBe(false);
  });

  it('views one mapping from a worker thread', async () => {
    const fd = n.memfdCreate('worker', 4096);
    const m = handle(n.mmap(fd, 4096, 0));
    const v = bytes(n.view(m.addr, 0, 4096));
    v[1] = 11;
    const worker = new Worker(
      `const { workerData, parentPort } = require('node:worker_threads');
       const n = require(workerData.path);
       const v = new Uint8Array(n.view(workerData.addr, 0, 16));
       v[0] = v[1] + 1;
       // Exit with a started watcher: the env cleanup hook must close its uv handle.
       const e = n.eventfd(0, true);
       n.watch(e, () => {}).start(n.READABLE);
       parentPort.postMessage('done');`,
      { eval: true, workerData: { path: packagePath('native/build/Release/vhost_gpu_native.node'), addr: m.addr } },
    );
    await new Promise((resolve) => worker.once('message', resolve));
    await worker.terminate();
    expect(v[0]).toBe(12);
    n.unmap(m.addr);
    n.close(fd);
  });

  it('copy checks bounds and handles overlap', () => {
    const src = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
    const dst = new Uint8Array(8);
    expect(n.copy(dst, 2, src, 1, 4)).toBe(0);
    expect([...dst]).toEqual([0, 0, 2, 3, 4, 5, 0, 0]);
    expect(n.copy(src, 2, src, 0, 6)).toBe(0); // memmove
    expect([...src]).toEqual([1, 2, 1, 2, 3, 4, 5, 6]);
    expect(n.copy(dst, 8, src, 8, 0)).toBe(0);
    for (const [dOff, sOff, len] of [[5, 0, 4], [0, 5, 4], [9, 0, 0], [0, 9, 0], [-1, 0, 1], [0, 0, 1.5], [0, 0, -1], [2 ** 53, 0, 1]])
      expect(n.copy(dst, dOff, src, sOff, len), `${dOff} ${sOff} ${len}`).toBe(-n.EINVAL);
    expect(() => n.copy(new Int8Array(8) as never, 0, src, 0, 1)).toThrow(TypeError);
    expect(() => n.copy(dst, 0, src.buffer as never, 0, 1)).toThrow(TypeError);
  });
});

describe('zero-copy writes', () => {
  const pipeOf = () => {
    const fds = new Int32Array(2);
    const cap = n.pipeCreate(fds, 1 << 20);
    expect(cap).toBeGreaterThanOrEqual(65536);
    return { r: fds[0], w: fds[1], cap };
  };
  const pages = (size: number) => {
    const ab = n.allocPages(size);
    if (typeof ab === 'number') throw new Error(`allocPages: ${ab}`);
    return new Uint8Array(ab);
  };
  const gc = () => {
    setFlagsFromString('--expose-gc');
    (runInNewContext('gc') as () => void)();
  };

  it('allocPages gives zeroed, page-aligned memory and refuses bad sizes', () => {
    const p = pages(10000);
    expect(p.byteLength).toBe(10000);
    expect(p.every((b) => b === 0)).toBe(true);
    expect([n.allocPages(0), n.allocPages(-1), n.allocPages(2 ** 31)]).toEqual([-n.EINVAL, -n.EINVAL, -n.EINVAL]);
  });

  it('sends pages by reference through a pipe into a socket, byte-exact', () => {
    const [a, b] = pair();
    n.setNonBlocking(a, true);
    n.setNonBlocking(b, true);
    const { r, w } = pipeOf();
    const src = pages(3 << 20);
    for (let i = 0; i < src.length; i += 4096) src[i] = (i >> 12) & 0xff;
    const got = new Uint8Array(src.length);
    let sent = 0, inPipe = 0, read = 0;
    while (read < src.length) {
      if (inPipe === 0 && sent < src.length) {
        const k = n.vmspliceIn(w, [src.subarray(sent)]);
        expect(k).toBeGreaterThan(0);
        sent += k;
        inPipe += k;
      }
      const m = n.spliceOut(r, a, inPipe);
      if (m > 0) inPipe -= m;
      else expect(m).toBe(-n.EAGAIN);
      const k = n.recvMsg(b, got, read, got.length - read, new Int32Array(9));
      if (k > 0) read += k;
      else expect(k).toBe(-n.EAGAIN);
    }
    expect(Buffer.compare(got, src)).toBe(0);
    expect(n.unsentBytes(a)).toBe(0);
    for (const fd of [a, b, r, w]) n.close(fd);
  });

  it('refuses memory that is not from allocPages (its pages could be reused)', () => {
    const { r, w } = pipeOf();
    expect(n.vmspliceIn(w, [new Uint8Array(8192)])).toBe(EFAULT);
    const p = pages(8192);
    expect(n.vmspliceIn(w, [p.subarray(4096)])).toBe(4096);
    expect(n.vmspliceIn(w, [p.subarray(0, 100), p.subarray(200, 300)])).toBe(200);
    expect(n.vmspliceIn(w, Array(513).fill(p))).toBe(-n.EINVAL);
    expect(n.vmspliceIn(-1, [p])).toBe(EBADF);
    n.close(r);
    n.close(w);
  });

  it('discardPages returns pages (reads as zeros after); pages the kernel holds keep their bytes', async () => {
    const [a, b] = pair();
    n.setNonBlocking(a, true);
    const { r, w } = pipeOf();
    const p = pages(65536);
    p.fill(0x5a);
    expect(n.vmspliceIn(w, [p])).toBe(65536);
    expect(n.spliceOut(r, a, 65536)).toBe(65536);
    expect(n.discardPages(p.buffer as ArrayBuffer)).toBe(0);
    expect(p.every((x) => x === 0)).toBe(true);
    const got = new Uint8Array(65536);
    let read = 0;
    while (read < got.length) read += n.recvMsg(b, got, read, got.length - read, new Int32Array(9));
    expect(got.every((x) => x === 0x5a)).toBe(true);
    expect(n.discardPages(new ArrayBuffer(8192))).toBe(EFAULT);
    for (const fd of [a, b, r, w]) n.close(fd);
  });

  it('pages held by the kernel keep their bytes after the buffer is freed; unsentBytes sees them', async () => {
    const [a, b] = pair();
    n.setNonBlocking(a, true);
    const { r, w } = pipeOf();
    let p: Uint8Array | undefined = pages(65536);
    p.fill(0xab);
    expect(n.vmspliceIn(w, [p])).toBe(65536);
    expect(n.spliceOut(r, a, 65536)).toBe(65536);
    expect(n.unsentBytes(a)).toBeGreaterThan(0);
    p = undefined;
    for (let i = 0; i < 5; i++) {
      gc();
      await sleep(10);
      pages(65536).fill(0xcd); // new allocations must not get the lent pages
    }
    const got = new Uint8Array(65536);
    let read = 0;
    while (read < got.length) read += n.recvMsg(b, got, read, got.length - read, new Int32Array(9));
    expect(got.every((x) => x === 0xab)).toBe(true);
    expect(n.unsentBytes(a)).toBe(0);
    expect(n.unsentBytes(-1)).toBe(EBADF);
    for (const fd of [a, b, r, w]) n.close(fd);
  });
});

describe('gatherRows', () => {
  function mapped(len: number): { host: number; bytes: Uint8Array } {
    const fd = n.memfdCreate('gather', len);
    const map = n.mmap(fd, len, 0);
    n.close(fd);
    if (typeof map === 'number') throw new Error(`mmap ${map}`);
    const ab = n.view(map.addr, 0, len);
    if (typeof ab === 'number') throw new Error(`view ${ab}`);
    return { host: Number(map.addr), bytes: new Uint8Array(ab) };
  }

  it('copies rows across scattered segments', () => {
    const m = mapped(4096);
    m.bytes.forEach((_, i) => (m.bytes[i] = i & 0xff));
    // Backing = bytes 1000..1009 then 100..119 of the mapping (30 bytes).
    const segs = new Float64Array([m.host + 1000, 10, m.host + 100, 20]);
    const dst = new Uint8Array(32);
    // 3 rows of 6 bytes, backing stride 8, dst stride 10, starting at backing offset 4.
    expect(n.gatherRows(dst, 1, 10, 6, 3, segs, 4, 8)).toBe(0);
    const backing = [...Array(10).keys()].map((i) => (1000 + i) & 0xff).concat([...Array(20).keys()].map((i) => 100 + i));
    for (let r = 0; r < 3; r++) expect([...dst.subarray(1 + r * 10, 7 + r * 10)]).toEqual(backing.slice(4 + r * 8, 10 + r * 8));
  });

  it('refuses ranges past either end and segments outside any mapping', () => {
    const m = mapped(4096);
    const segs = new Float64Array([m.host, 64]);
    const dst = new Uint8Array(64);
    expect(n.gatherRows(dst, 0, 0, 65, 1, segs, 0, 0)).toBe(-n.EINVAL); // source too short
    expect(n.gatherRows(dst, 8, 0, 60, 1, segs, 0, 0)).toBe(-n.EINVAL); // destination too short
    expect(n.gatherRows(dst, 0, 32, 16, 3, segs, 0, 16)).toBe(-n.EINVAL); // third row past dst
    expect(n.gatherRows(dst, 0, 0, 8, 1, new Float64Array([0x1000, 64]), 0, 0)).toBe(EFAULT);
    // Only the bytes the rows touch must lie in one mapping: the first 64 do; bytes 64..127
    // straddle the mapping's end (whatever is mapped after it).
    expect(n.gatherRows(dst, 0, 0, 8, 1, new Float64Array([m.host + 4000, 200]), 0, 0)).toBe(0);
    expect(n.gatherRows(dst, 0, 0, 64, 1, new Float64Array([m.host + 4000, 200]), 64, 0)).toBe(-14);
    expect(n.gatherRows(dst, 0, 0, 8, 1, new Float64Array([m.host, -1]), 0, 0)).toBe(-14);
    expect(() => n.gatherRows(dst, 0, 0, 8, 1, [m.host, 8] as never, 0, 0)).toThrow(TypeError);
  });
});

describe('eventfd', () => {
  it('reads, writes and reports EAGAIN', () => {
    const fd = n.eventfd(0, true);
    expect(n.eventfdRead(fd)).toBe(-n.EAGAIN);
    expect(n.eventfdWrite(fd, 2)).toBe(0);
    expect(n.eventfdWrite(fd, 3)).toBe(0);
    expect(n.eventfdRead(fd)).toBe(5);
    expect(n.eventfdRead(fd)).toBe(-n.EAGAIN);
    expect(n.eventfdWrite(fd, -1)).toBe(-n.EINVAL);
    n.close(fd);
    const blocking = n.eventfd(4, false);
    expect(n.eventfdRead(blocking)).toBe(4);
    n.close(blocking);
    expect(n.eventfd(-1, true)).toBe(-n.EINVAL);
    expect(() => n.eventfd(0, 1 as never)).toThrow(TypeError);
  });
});

describe('watch', () => {
  it('fires on an eventfd write; stop and close work; close is idempotent', async () => {
    const fd = n.eventfd(0, true);
    const seen: number[] = [];
    let wake = () => {};
    const w = n.watch(fd, (events) => {
      seen.push(events);
      n.eventfdRead(fd);
      wake();
    });
    if (typeof w === 'number') throw new Error(`watch: ${w}`);
    expect(w.start(n.READABLE)).toBe(0);
    const fired = new Promise<void>((r) => (wake = r));
    n.eventfdWrite(fd, 1);
    await fired;
    expect(seen).toEqual([n.READABLE]);
    w.stop();
    n.eventfdWrite(fd, 1);
    await sleep(30);
    expect(seen.length).toBe(1); // stopped: nothing delivered
    w.close();
    w.close();
    w.stop();
    expect(w.start(n.READABLE)).toBe(EBADF);
    n.close(fd);
  });

  it('reports init errors as numbers and keeps the fd blocking mode', () => {
    const fd = n.eventfd(0, false);
    const w = n.watch(fd, () => {});
    if (typeof w === 'number') throw new Error(`watch: ${w}`);
    expect(isNonBlocking(fd)).toBe(false);
    expect(w.start(0x100)).toBe(-n.EINVAL);
    expect(w.start(n.READABLE)).toBe(0);
    expect(n.watch(fd, () => {})).toBe(EEXIST); // one active watcher per fd and loop (libuv)
    w.close();
    n.close(fd);
    expect(n.watch(fd, () => {})).toBeLessThan(0);
    expect(() => n.watch(fd, 'cb' as never)).toThrow(TypeError);
    expect(() => n.watch(fd, () => {}, 1 as never)).toThrow(TypeError);
  });

  it('closes an owned fd with its handle, not before', async () => {
    const fd = n.eventfd(0, true);
    const w = n.watch(fd, () => {}, true);
    if (typeof w === 'number') throw new Error(`watch: ${w}`);
    expect(w.start(n.READABLE)).toBe(0);
    expect(n.eventfdWrite(fd, 1)).toBe(0); // still ours to use
    w.close();
    await sleep(10); // libuv closes the handle on the next loop turn
    expect(() => fstatSync(fd)).toThrow(/EBADF/);
  });

  it('a worker torn down with a started, never polled watcher on an owned dup survives the original fd being closed', async () => {
    // The context-worker crash: the coordinator closed the eventfd while the dying worker's loop
    // still had to register the handle with epoll (libuv aborts the process on EBADF there).
    const before = openFds();
    for (let i = 0; i < 10; i++) {
      const fd = n.eventfd(0, true);
      const worker = new Worker(
        `const { workerData, parentPort } = require('node:worker_threads');
         const n = require(workerData.path);
         const dup = n.dup(workerData.fd);
         n.watch(dup, () => {}, true).start(n.READABLE);
         parentPort.postMessage('started');
         Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); // the loop never turns`,
        { eval: true, workerData: { path: packagePath('native/build/Release/vhost_gpu_native.node'), fd } },
      );
      await new Promise((resolve) => worker.once('message', resolve));
      n.close(fd);
      await worker.terminate();
    }
    expect(openFds()).toBe(before); // every dup closed with its handle at teardown
  });
});

describe('sandbox (the render server\'s seccomp filter)', () => {
  // Irreversible, so it runs in a child process: what a compromised render server could still do.
  it('refuses exec, opens, sockets and signals to others; threads, memfds, eventfds and signals to itself work', async () => {
    const { spawnSync } = await import('node:child_process');
    const script = `
      const n = require(${JSON.stringify(packagePath('native/build/Release/vhost_gpu_native.node'))});
      const fs = require('node:fs'), cp = require('node:child_process'), net = require('node:net');
      const { Worker } = require('node:worker_threads');
      const out = { sandbox: n.sandbox() };
      const attempt = (name, f) => { try { f(); out[name] = 'ok'; } catch (e) { out[name] = e.code || e.message; } };
      attempt('open', () => fs.openSync('/etc/hostname', 'r'));
      attempt('exec', () => { const r = cp.spawnSync('/bin/true'); if (r.error) throw r.error; });
      attempt('killOther', () => process.kill(1, 0));
      attempt('killSelf', () => process.kill(process.pid, 0));
      out.memfd = n.memfdCreate('sandbox-test', 4096) >= 0;
      out.eventfd = n.eventfd(0, true) >= 0;
      new Worker('require("node:worker_threads").parentPort.postMessage(42)', { eval: true }).on('message', (m) => {
        out.thread = m;
        net.createServer().listen(${JSON.stringify(join(tmpdir(), `vhost-gpu-sandbox-${process.pid}.sock`))})
          .on('error', (e) => { out.listen = e.code; console.log(JSON.stringify(out)); process.exit(0); })
          .on('listening', () => { out.listen = 'ok'; console.log(JSON.stringify(out)); process.exit(0); });
      });`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      sandbox: 0, open: 'EPERM', exec: 'EPERM', killOther: 'EPERM', killSelf: 'ok', memfd: true, eventfd: true, thread: 42, listen: 'EPERM',
    });
  });
});
