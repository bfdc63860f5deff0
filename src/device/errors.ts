import { Resp } from './protocol.js';

export type GpuErrorKind = 'unspec' | 'oom' | 'scanout' | 'resource' | 'context' | 'param';

/** A command failed for a reason the guest is told about; `kind` picks the response code. */
export class GpuError extends Error {
  constructor(readonly kind: GpuErrorKind, message: string) {
    super(message);
  }
}

const RESP_OF: Record<GpuErrorKind, number> = {
  unspec: Resp.ERR_UNSPEC,
  oom: Resp.ERR_OUT_OF_MEMORY,
  scanout: Resp.ERR_INVALID_SCANOUT_ID,
  resource: Resp.ERR_INVALID_RESOURCE_ID,
  context: Resp.ERR_INVALID_CONTEXT_ID,
  param: Resp.ERR_INVALID_PARAMETER,
};

/** The one place where errors become wire codes. Anything unexpected is ERR_UNSPEC. */
export function respType(e: unknown): number {
  return e instanceof GpuError ? RESP_OF[e.kind] : Resp.ERR_UNSPEC;
}
