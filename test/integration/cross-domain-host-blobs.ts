/**
 * Host memory blobs the way a guest gets them from a query-only cross-domain context, through the
 * whole device (a FrontendSession's driver): CTX_CREATE with capset 5, a guest blob as the query
 * ring, INIT without a channel, then per blob GET_IMAGE_REQUIREMENTS (fenced on the query ring) and
 * RESOURCE_CREATE_BLOB HOST3D MAPPABLE with the blob id it answered. Used by the SHMEM tests and
 * the blob-mapping benchmark.
 */
import { BlobFlag, BlobMem, GpuResp } from '../frontend/constants.js';
import type { AttachResponse, FrontendSession, GpuResponse, ScatterBuffer } from '../frontend/index.js';
import * as P from '../../src/renderers/cross-domain/protocol.js';
import { imageRequirementsCommand, initCommand, parseRequirements } from './cross-domain-guest.js';

export const CROSS_DOMAIN_CAPSET = 5;
export const XR24 = 0x34325258;

function ok(what: string, r: GpuResponse): void {
  if (r.type !== GpuResp.OK_NODATA) throw new Error(`${what} answered 0x${r.type.toString(16)}`);
}

export class CrossDomainHostBlobs {
  private query: ScatterBuffer | null = null;
  private fence = 1n;

  constructor(private readonly s: FrontendSession, readonly ctxId: number, readonly queryResource: number) {}

  async init(): Promise<void> {
    const d = this.s.driver;
    ok('CTX_CREATE', await d.ctxCreate(this.ctxId, { contextInit: CROSS_DOMAIN_CAPSET }));
    const q = await d.createBlob({ resourceId: this.queryResource, blobMem: BlobMem.GUEST, blobFlags: BlobFlag.USE_MAPPABLE, size: 4096, backing: true });
    ok('RESOURCE_CREATE_BLOB (query ring)', q);
    this.query = (q as AttachResponse).backing;
    ok('CTX_ATTACH_RESOURCE', await d.ctxAttach(this.ctxId, this.queryResource));
    ok('INIT', await d.submit3d(this.ctxId, initCommand(this.queryResource, 0, 0)));
  }

  /** A MAPPABLE HOST3D blob holding a width x height XR24 image; resolves with its size. */
  async create(resourceId: number, width: number, height: number): Promise<number> {
    if (!this.query) throw new Error('init() first');
    const d = this.s.driver;
    ok('GET_IMAGE_REQUIREMENTS', await d.submit3d(this.ctxId, imageRequirementsCommand(width, height, XR24), { ctxId: this.ctxId, fenceId: this.fence++, ringIdx: P.QUERY_RING }));
    const r = this.query.read(0, P.REQS.BYTES);
    const { size, blobId } = parseRequirements(new DataView(r.buffer, r.byteOffset, r.length));
    ok('RESOURCE_CREATE_BLOB (HOST3D)', await d.createBlob({ resourceId, blobMem: BlobMem.HOST3D, blobFlags: BlobFlag.USE_MAPPABLE, size, blobId }, { ctxId: this.ctxId }));
    return size;
  }
}
