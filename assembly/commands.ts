// virtio-gpu request decoding: checks the request is as long as its type needs, copies the header
// and the request words into the record, and decodes/validates mem_entry lists. What a command
// means (ids, rectangles, formats) is checked by the device, which knows the resources.
import {
  REC, REQ, REQ_SIZE, ENTRIES, MAX_ENTRIES,
  R_STATUS, R_RLEN, R_WLEN, R_TYPE, R_FLAGS, R_FENCE_LO, R_FENCE_HI, R_CTX, R_RING, R_NENTRIES, R_ARGS, R_MAX_ARGS,
  E_NO_WRITABLE, RESP_ERR_UNSPEC, RESP_ERR_INVALID_PARAMETER,
} from './layout';
import { chain_read } from './virtqueue';
import { rangeValid } from './memory-table';

@inline const HDR_SIZE: u32 = 24;

/** Request size (header included) of each command type, 0 for unknown types. */
export function requestSize(type: u32): u32 {
  switch (type) {
    case 0x0100: return 24;  // GET_DISPLAY_INFO
    case 0x0101: return 40;  // RESOURCE_CREATE_2D
    case 0x0102: return 32;  // RESOURCE_UNREF
    case 0x0103: return 48;  // SET_SCANOUT
    case 0x0104: return 48;  // RESOURCE_FLUSH
    case 0x0105: return 56;  // TRANSFER_TO_HOST_2D
    case 0x0106: return 32;  // RESOURCE_ATTACH_BACKING (+ entries)
    case 0x0107: return 32;  // RESOURCE_DETACH_BACKING
    case 0x0108: return 32;  // GET_CAPSET_INFO
    case 0x0109: return 32;  // GET_CAPSET
    case 0x010a: return 32;  // GET_EDID
    case 0x010b: return 32;  // RESOURCE_ASSIGN_UUID
    case 0x010c: return 56;  // RESOURCE_CREATE_BLOB (+ entries)
    case 0x010d: return 96;  // SET_SCANOUT_BLOB
    case 0x0200: return 96;  // CTX_CREATE
    case 0x0201: return 24;  // CTX_DESTROY
    case 0x0202: return 32;  // CTX_ATTACH_RESOURCE
    case 0x0203: return 32;  // CTX_DETACH_RESOURCE
    case 0x0204: return 72;  // RESOURCE_CREATE_3D
    case 0x0205: return 72;  // TRANSFER_TO_HOST_3D
    case 0x0206: return 72;  // TRANSFER_FROM_HOST_3D
    case 0x0207: return 32;  // SUBMIT_3D (+ command stream)
    case 0x0208: return 40;  // RESOURCE_MAP_BLOB
    case 0x0209: return 32;  // RESOURCE_UNMAP_BLOB
    case 0x0300: return 56;  // UPDATE_CURSOR
    case 0x0301: return 56;  // MOVE_CURSOR
  }
  return 0;
}

@inline function setRec(i: i32, v: i32): void {
  store<i32>(REC + (<usize>i << 2), v);
}

@inline function getRec(i: i32): i32 {
  return load<i32>(REC + (<usize>i << 2));
}

/**
 * Decode the request of the chain just popped (vq_pop returned POP_CHAIN with R_STATUS 0).
 * needResponse: the queue answers with a response header (control queue), so a chain without
 * room for one is a chain error. Sets R_STATUS: 0 ok, a RESP_ERR_* to answer with, or E_*.
 */
export function decode(needResponse: bool): i32 {
  const rlen = <u32>getRec(R_RLEN);
  if (needResponse && <u32>getRec(R_WLEN) < HDR_SIZE) return fail(E_NO_WRITABLE);
  if (rlen < HDR_SIZE) {
    setRec(R_TYPE, rlen >= 4 ? load<i32>(REQ) : 0);
    setRec(R_FLAGS, 0);
    return fail(RESP_ERR_UNSPEC);
  }
  const type = load<u32>(REQ);
  setRec(R_TYPE, type);
  setRec(R_FLAGS, load<i32>(REQ, 4));
  setRec(R_FENCE_LO, load<i32>(REQ, 8));
  setRec(R_FENCE_HI, load<i32>(REQ, 12));
  setRec(R_CTX, load<i32>(REQ, 16));
  setRec(R_RING, <i32>load<u8>(REQ, 20));
  setRec(R_NENTRIES, 0);
  const size = requestSize(type);
  if (size == 0 || rlen < size) return fail(RESP_ERR_UNSPEC);
  const words = <i32>((size - HDR_SIZE) >> 2);
  for (let i = 0; i < words && i < R_MAX_ARGS; i++) setRec(R_ARGS + i, load<i32>(REQ + HDR_SIZE + (<usize>i << 2)));
  if (type == 0x0106) return decodeEntries(load<u32>(REQ, 28), 32, rlen);
  if (type == 0x010c) return decodeEntries(load<u32>(REQ, 36), 56, rlen);
  if (type == 0x0207 && <u64>load<u32>(REQ, 24) + 32 > <u64>rlen) return fail(RESP_ERR_UNSPEC);
  setRec(R_STATUS, 0);
  return 0;
}

function fail(code: i32): i32 {
  setRec(R_STATUS, code);
  return code;
}

/** Copy nr mem_entries starting at byte `at` of the request into ENTRIES, each checked against guest memory. */
function decodeEntries(nr: u32, at: u32, rlen: u32): i32 {
  if (nr > MAX_ENTRIES) return fail(RESP_ERR_INVALID_PARAMETER);
  const bytes = nr << 4;
  if (<u64>at + <u64>bytes > <u64>rlen) return fail(RESP_ERR_UNSPEC);
  // Entries usually sit in REQ already; larger lists are read straight from the chain.
  if (at + bytes <= REQ_SIZE) memory.copy(ENTRIES, REQ + at, bytes);
  else if (chain_read(at, ENTRIES, bytes) != bytes) return fail(RESP_ERR_UNSPEC);
  for (let i: u32 = 0; i < nr; i++) {
    const e = ENTRIES + (<usize>i << 4);
    if (!rangeValid(load<u64>(e), <u64>load<u32>(e, 8))) return fail(RESP_ERR_INVALID_PARAMETER);
  }
  setRec(R_NENTRIES, nr);
  setRec(R_STATUS, 0);
  return 0;
}
