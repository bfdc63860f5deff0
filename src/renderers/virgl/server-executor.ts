/**
 * Executes one command-ring message against virglrenderer (in the render server). Never throws
 * for bad input: a short message or an unknown op becomes an ERROR completion; every executed
 * command (but FENCE, READBACK and SHUTDOWN, which have their own) is answered with a RESULT.
 */
import type { NativeAddon } from '../../native.js';
import type { SabRing } from '../sab-ring.js';
import type { CompletionWriter } from './server-completions.js';
import type { ServerMemory } from './server-memory.js';
import * as P from './protocol.js';
import { unsafeCommand } from './stream-guard.js';
import { log } from '../../log.js';

const EINVAL = -22;
/** attachBacking/submit: a chunk was taken, more of the same command follow (no RESULT yet). */
const MORE = 1;
/** The addon's own limit for one command stream. */
const MAX_SUBMIT_BYTES = 64 << 20;
/** The addon's own limit for one backing. */
const MAX_SEGMENTS = 16384;

/** What the executor needs from the fence machinery of the server. */
export interface FenceHooks {
  /** Report fences that already retired (before a context destroy drops the rest). */
  collect(): void;
  /** Wait (bounded) until every fence created so far on any timeline has retired. */
  quiesce(): void;
  /** A fence was created on timeline ctx (0 = global). */
  created(ctx: number, seq: number): void;
  /** Timeline ctx is gone. */
  forget(ctx: number): void;
}

export class CommandExecutor {
  // Reused argument arrays for the addon.
  private readonly resArgs = new Uint32Array(P.CREATE_RESOURCE.ARG_COUNT);
  private readonly box = new Uint32Array(6);
  // A command split into chunks (FLAG_MORE) is assembled here.
  private submitBuf = new Uint8Array(0);
  private submitLen = 0;
  private segs: number[] = [];
  /** Resource -> length of its first backing segment in the library (what GET_MEMORY_INFO writes to). */
  private readonly firstIov = new Map<number, number>();
  private readonly firstIovBytes = (res: number): number => this.firstIov.get(res) ?? 0;
  private flipScratch = new Uint8Array(0);
  /** A chunked command that failed before its last chunk: the rest of its chunks are skipped. */
  private droppedTag = 0;
  private readonly decoder = new TextDecoder();

  constructor(
    private readonly n: NativeAddon,
    private readonly cmd: SabRing,
    private readonly out: CompletionWriter,
    private readonly readbackBytes: Uint8Array,
    private readonly fences: FenceHooks,
    private readonly memory: ServerMemory,
  ) {}

  /** Execute the message at [at, at+len) of the command ring; true for SHUTDOWN. */
  execute(at: number, len: number): boolean {
    const v = this.cmd.view;
    const u32 = (off: number) => v.getUint32(at + off, true);
    const op = len >= P.HDR.SIZE ? u32(P.HDR.OP) : 0;
    const tag = len >= P.HDR.SIZE ? u32(P.HDR.TAG) : 0;
    const need = minSize(op);
    if (need < 0 || len < need) {
      this.out.error(op, tag, EINVAL, len, 0);
      return false;
    }
    const chunked = op === P.Cmd.SUBMIT || op === P.Cmd.ATTACH_BACKING;
    const more = chunked && (u32(P.SUBMIT.FLAGS) & P.FLAG_MORE) !== 0; // same offset in both
    if (chunked && this.droppedTag !== 0 && tag === this.droppedTag) {
      if (!more) this.droppedTag = 0;
      return false;
    }
    const n = this.n;
    let rc = 0, a = 0, b = 0;
    switch (op) {
      case P.Cmd.CREATE_CONTEXT: {
        a = u32(P.CREATE_CONTEXT.CTX);
        const nameLen = Math.min(u32(P.CREATE_CONTEXT.NAME_LEN), P.MAX_NAME_BYTES, len - P.CREATE_CONTEXT.NAME);
        const start = at + P.CREATE_CONTEXT.NAME;
        let name = this.cmd.bytes.slice(start, start + nameLen); // a plain copy: TextDecoder refuses shared memory
        const nul = name.indexOf(0);
        if (nul >= 0) name = name.subarray(0, nul); // C string semantics
        rc = n.virglContextCreate(a, u32(P.CREATE_CONTEXT.CAPSET), this.decoder.decode(name));
        break;
      }
      case P.Cmd.DESTROY_CONTEXT:
        a = u32(P.DESTROY_CONTEXT.CTX);
        // Destroying a context while virglrenderer's sync thread waits on a fence (of any
        // context) loses or corrupts that fence in 0.10.4: let every fence retire first.
        this.fences.quiesce();
        this.fences.collect(); // destroying drops the context's pending fences: report the finished ones first
        rc = n.virglContextDestroy(a);
        this.fences.forget(a);
        this.out.fenceEvent(P.Cpl.FENCES_DROPPED, tag, a, P.seqJoin(u32(P.DESTROY_CONTEXT.HORIZON_LO), u32(P.DESTROY_CONTEXT.HORIZON_HI)));
        break;
      case P.Cmd.CTX_ATTACH:
      case P.Cmd.CTX_DETACH:
        a = u32(P.CTX_RESOURCE.CTX);
        b = u32(P.CTX_RESOURCE.RES);
        rc = op === P.Cmd.CTX_ATTACH ? n.virglCtxAttachResource(a, b) : n.virglCtxDetachResource(a, b);
        break;
      case P.Cmd.CREATE_RESOURCE:
        for (let i = 0; i < P.CREATE_RESOURCE.ARG_COUNT; i++) this.resArgs[i] = u32(P.CREATE_RESOURCE.ARGS + 4 * i);
        b = this.resArgs[0];
        rc = n.virglResourceCreate(this.resArgs);
        break;
      case P.Cmd.UNREF_RESOURCE:
        b = u32(P.RESOURCE.RES);
        rc = n.virglResourceUnref(b);
        this.backingGone(b);
        break;
      case P.Cmd.ATTACH_BACKING:
        b = u32(P.ATTACH_BACKING.RES);
        rc = this.attachBacking(at, len, b);
        break;
      case P.Cmd.DETACH_BACKING:
        b = u32(P.RESOURCE.RES);
        rc = n.virglDetachIov(b);
        this.backingGone(b);
        break;
      case P.Cmd.TRANSFER_WRITE:
      case P.Cmd.TRANSFER_READ: {
        b = u32(P.TRANSFER.RES);
        a = u32(P.TRANSFER.CTX);
        for (let i = 0; i < 6; i++) this.box[i] = u32(P.TRANSFER.BOX + 4 * i);
        const [level, stride, layerStride] = [u32(P.TRANSFER.LEVEL), u32(P.TRANSFER.STRIDE), u32(P.TRANSFER.LAYER_STRIDE)];
        const offset = v.getFloat64(at + P.TRANSFER.OFFSET, true);
        rc = op === P.Cmd.TRANSFER_WRITE
          ? n.virglTransferWrite(b, a, level, stride, layerStride, this.box, offset)
          : n.virglTransferRead(b, a, level, stride, layerStride, this.box, offset);
        break;
      }
      case P.Cmd.SUBMIT:
        a = u32(P.SUBMIT.CTX);
        rc = this.submit(at, len, a);
        break;
      case P.Cmd.FENCE:
        this.fence(u32(P.FENCE.CTX), P.seqJoin(u32(P.FENCE.SEQ_LO), u32(P.FENCE.SEQ_HI)), tag);
        return false;
      case P.Cmd.READBACK:
        this.readback(at, tag);
        return false;
      case P.Cmd.SHARE_MEMORY:
        a = u32(P.SHARE_MEMORY.ID);
        rc = this.memory.share(a, v.getFloat64(at + P.SHARE_MEMORY.ADDR, true), v.getFloat64(at + P.SHARE_MEMORY.LEN, true));
        break;
      case P.Cmd.UNSHARE_MEMORY:
        a = u32(P.UNSHARE_MEMORY.ID);
        rc = this.memory.unshare(a);
        break;
      case P.Cmd.SHUTDOWN:
        return true;
    }
    if (rc === MORE) return false;
    if (rc < 0 && more) this.droppedTag = tag;
    this.out.result(op, tag, rc, a, b);
    return false;
  }

  private attachBacking(at: number, len: number, res: number): number {
    const v = this.cmd.view;
    const count = v.getUint32(at + P.ATTACH_BACKING.COUNT, true);
    if (len < P.ATTACH_BACKING.SEGS + count * P.ATTACH_BACKING.SEG_BYTES) return this.dropSegments(EINVAL);
    for (let i = 0, off = at + P.ATTACH_BACKING.SEGS; i < count * 2; i++, off += 8) this.segs.push(v.getFloat64(off, true));
    if (this.segs.length > 2 * MAX_SEGMENTS) return this.dropSegments(EINVAL);
    if (v.getUint32(at + P.ATTACH_BACKING.FLAGS, true) & P.FLAG_MORE) return MORE;
    const t = this.memory.translate(this.segs); // null: not inside memory the coordinator shared
    this.segs = [];
    if (!t) return EINVAL;
    const rc = this.n.virglAttachIov(res, t.iov);
    if (rc >= 0) {
      this.firstIov.set(res, t.iov.length >= 2 ? Number(t.iov[1]) : 0);
      this.memory.pin(res, t.used);
    }
    return rc;
  }

  /** The library let go of res's backing (detach or unref). */
  private backingGone(res: number): void {
    this.firstIov.delete(res);
    this.memory.unpin(res);
  }

  private dropSegments(rc: number): number {
    this.segs = [];
    return rc;
  }

  private submit(at: number, len: number, ctx: number): number {
    const v = this.cmd.view;
    const bytes = v.getUint32(at + P.SUBMIT.LEN, true);
    const flags = v.getUint32(at + P.SUBMIT.FLAGS, true);
    if (flags & P.FLAG_ABORT) return this.dropSubmit(0); // the coordinator reported its own failure
    if (P.SUBMIT.DATA + bytes > len) return this.dropSubmit(EINVAL);
    const data = this.cmd.bytes.subarray(at + P.SUBMIT.DATA, at + P.SUBMIT.DATA + bytes);
    const more = (flags & P.FLAG_MORE) !== 0;
    // Common case, one chunk: virglrenderer reads the stream in place from the ring.
    if (!more && this.submitLen === 0) return this.guardedSubmit(ctx, data);
    const total = this.submitLen + bytes;
    if (total > MAX_SUBMIT_BYTES) return this.dropSubmit(EINVAL);
    if (total > this.submitBuf.length) {
      const grown = new Uint8Array(Math.max(total, this.submitBuf.length * 2));
      grown.set(this.submitBuf.subarray(0, this.submitLen));
      this.submitBuf = grown;
    }
    this.submitBuf.set(data, this.submitLen);
    this.submitLen = total;
    if (more) return MORE;
    this.submitLen = 0;
    const rc = this.guardedSubmit(ctx, this.submitBuf.subarray(0, total));
    if (this.submitBuf.length > 1 << 20) this.submitBuf = new Uint8Array(0); // do not keep a big one
    return rc;
  }

  /** A stream that would crash the library is refused whole (EINVAL), as it refuses malformed ones. */
  private guardedSubmit(ctx: number, stream: Uint8Array): number {
    const why = unsafeCommand(stream, this.firstIovBytes);
    if (why !== null) {
      log.guest('virgl-guard', `virgl context ${ctx}: SUBMIT_3D refused: ${why}`);
      return EINVAL;
    }
    return this.n.virglSubmit(ctx, stream);
  }

  private dropSubmit(rc: number): number {
    this.submitLen = 0;
    return rc;
  }

  private fence(ctx: number, seq: number, tag: number): void {
    // 0.10.4 refuses ring_idx != 0 for virgl contexts: the coordinator maps its timelines onto
    // per-context sequence numbers, so ring 0 is all we use.
    const rc = ctx === 0 ? this.n.virglCreateFence(seq >>> 0, 0) : this.n.virglContextCreateFence(ctx, 0, 0, BigInt(seq));
    if (rc >= 0) {
      this.fences.created(ctx, seq);
      return;
    }
    const at = this.out.begin(P.Cpl.FENCE_FAILED, tag, P.FENCE_FAILED.SIZE);
    const v = this.out.view;
    v.setUint32(at + P.FENCE_FAILED.CTX, ctx, true);
    v.setUint32(at + P.FENCE_FAILED.SEQ_LO, P.seqLo(seq), true);
    v.setUint32(at + P.FENCE_FAILED.SEQ_HI, P.seqHi(seq), true);
    v.setInt32(at + P.FENCE_FAILED.STATUS, rc, true);
    this.out.end();
  }

  private readback(at: number, tag: number): void {
    const u32 = (off: number) => this.cmd.view.getUint32(at + off, true);
    const [x, y, w, h] = [u32(P.READBACK.X), u32(P.READBACK.Y), u32(P.READBACK.W), u32(P.READBACK.H)];
    const dstOff = u32(P.READBACK.DST_OFFSET);
    const stride = u32(P.READBACK.DST_STRIDE);
    const row = w * 4;
    let rc = EINVAL;
    if (w > 0 && h > 0 && stride >= row && dstOff + stride * (h - 1) + row <= this.readbackBytes.length) {
      const res = u32(P.READBACK.RES);
      this.box.set([x, y, 0, w, h, 1]);
      if (u32(P.READBACK.FLIP_Y) === 0) {
        rc = this.n.virglReadback(res, this.box, this.readbackBytes.subarray(dstOff, dstOff + stride * (h - 1) + row), stride);
      } else {
        // Read tightly packed aside, then place the rows bottom-up.
        if (this.flipScratch.length < row * h) this.flipScratch = new Uint8Array(row * h);
        rc = this.n.virglReadback(res, this.box, this.flipScratch, row);
        for (let r = 0; rc === 0 && r < h; r++) {
          this.readbackBytes.set(this.flipScratch.subarray(r * row, (r + 1) * row), dstOff + (h - 1 - r) * stride);
        }
      }
    }
    const d = this.out.begin(P.Cpl.READBACK_DONE, tag, P.READBACK_DONE.SIZE);
    this.out.view.setInt32(d + P.READBACK_DONE.STATUS, rc, true);
    this.out.end();
  }
}

/** Fixed part each op needs, or -1 for an unknown op. */
function minSize(op: number): number {
  switch (op) {
    case P.Cmd.CREATE_CONTEXT: return P.CREATE_CONTEXT.SIZE;
    case P.Cmd.DESTROY_CONTEXT: return P.DESTROY_CONTEXT.SIZE;
    case P.Cmd.CTX_ATTACH: case P.Cmd.CTX_DETACH: return P.CTX_RESOURCE.SIZE;
    case P.Cmd.CREATE_RESOURCE: return P.CREATE_RESOURCE.SIZE;
    case P.Cmd.UNREF_RESOURCE: case P.Cmd.DETACH_BACKING: return P.RESOURCE.SIZE;
    case P.Cmd.ATTACH_BACKING: return P.ATTACH_BACKING.SIZE;
    case P.Cmd.TRANSFER_WRITE: case P.Cmd.TRANSFER_READ: return P.TRANSFER.SIZE;
    case P.Cmd.SUBMIT: return P.SUBMIT.SIZE;
    case P.Cmd.FENCE: return P.FENCE.SIZE;
    case P.Cmd.READBACK: return P.READBACK.SIZE;
    case P.Cmd.SHARE_MEMORY: return P.SHARE_MEMORY.SIZE;
    case P.Cmd.UNSHARE_MEMORY: return P.UNSHARE_MEMORY.SIZE;
    case P.Cmd.SHUTDOWN: return P.HDR.SIZE;
    default: return -1;
  }
}
