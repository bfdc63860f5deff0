// Bulk copy from scattered guest memory into a host buffer: the rows of a TRANSFER_TO_HOST_2D
// in one call. The source is a guest backing resolved to host addresses (segments inside addon
// mappings); what the rows touch is pinned while copying, so an unmap meanwhile cannot fault us.
#include <cstring>
#include <vector>

#include "common.h"

namespace vg {
namespace {

// gatherRows(dst, dstOff, dstStride, rowBytes, rows, segs: Float64Array [addr, len]*, srcOff, srcStride)
// Row r: backing bytes [srcOff + r*srcStride, +rowBytes) -> dst[dstOff + r*dstStride ...).
// 0, -EINVAL (bad shape or ranges), -EFAULT (a segment outside the addon's mappings).
Napi::Value GatherRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* dst;
  size_t dstLen;
  int64_t dstOff, dstStride, rowBytes, rows, srcOff, srcStride;
  if (!ArgBytes(info[0], &dst, &dstLen) || !ArgIndex(info, 1, &dstOff) || !ArgIndex(info, 2, &dstStride) ||
      !ArgIndex(info, 3, &rowBytes) || !ArgIndex(info, 4, &rows))
    return {};
  if (!info[5].IsTypedArray() || info[5].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    return TypeErr(env, "segs must be a Float64Array");
  if (!ArgIndex(info, 6, &srcOff) || !ArgIndex(info, 7, &srcStride)) return {};
  auto segArr = info[5].As<Napi::Float64Array>();
  const double* segs = segArr.Data();
  size_t nsegs = segArr.ElementLength() / 2;
  if (dstOff < 0 || dstStride < 0 || rowBytes < 0 || rows < 0 || srcOff < 0 || srcStride < 0 ||
      segArr.ElementLength() % 2 != 0)
    return Err(env, EINVAL);
  if (rows == 0 || rowBytes == 0) return Num(env, 0);

  // Destination: the last row must end inside dst (checked in 128-bit-free steps: all < 2^53).
  const double lastDst = static_cast<double>(dstOff) + static_cast<double>(dstStride) * (rows - 1) + rowBytes;
  if (lastDst > static_cast<double>(dstLen)) return Err(env, EINVAL);

  // Source segments: check their numbers and note where each starts in the backing. Pinning
  // happens below, lazily, for the segments the rows touch (one pin covers a whole mapping).
  std::vector<uint64_t> start(nsegs + 1);
  uint64_t total = 0;
  for (size_t i = 0; i < nsegs; i++) {
    double a = segs[2 * i], l = segs[2 * i + 1];
    if (!(a >= 0 && a <= kMaxSafe && l >= 0 && l <= kMaxSafe) || a != static_cast<double>(static_cast<uint64_t>(a)) ||
        l != static_cast<double>(static_cast<uint64_t>(l)))
      return Err(env, EFAULT);
    start[i] = total;
    total += static_cast<uint64_t>(l);
  }
  start[nsegs] = total;
  const double lastSrc = static_cast<double>(srcOff) + static_cast<double>(srcStride) * (rows - 1) + rowBytes;
  if (lastSrc > static_cast<double>(total)) return Err(env, EINVAL);

  std::vector<const void*> pins;
  uint64_t pinLo = 1, pinHi = 0;  // bounds of the mapping pinned last (empty at first)
  auto unpinAll = [&]() {
    for (const void* p : pins) UnpinRange(p);
  };
  // Make sure [a, a+n) is inside a pinned mapping; false if no live mapping holds it.
  auto covered = [&](uint64_t a, uint64_t n) {
    if (a >= pinLo && a + n <= pinHi && a + n >= a) return true;
    const void* pin = PinRange(a, n);
    if (pin == nullptr) return false;
    pins.push_back(pin);
    PinnedBounds(pin, &pinLo, &pinHi);
    return true;
  };

  size_t seg = 0;
  for (int64_t r = 0; r < rows; r++) {
    uint64_t from = static_cast<uint64_t>(srcOff) + static_cast<uint64_t>(srcStride) * r;
    uint8_t* out = dst + dstOff + dstStride * r;
    uint64_t left = static_cast<uint64_t>(rowBytes);
    // Rows only move forward (srcStride >= 0); step back only if a row starts before the cursor.
    while (seg > 0 && start[seg] > from) seg--;
    while (seg + 1 < nsegs && start[seg + 1] <= from) seg++;
    while (left > 0) {
      uint64_t in = from - start[seg];
      uint64_t avail = start[seg + 1] - start[seg] - in;
      uint64_t n = left < avail ? left : avail;
      uint64_t srcAddr = static_cast<uint64_t>(segs[2 * seg]) + in;
      if (!covered(srcAddr, n)) {
        unpinAll();
        return Err(env, EFAULT);
      }
      std::memcpy(out, reinterpret_cast<const void*>(static_cast<uintptr_t>(srcAddr)), n);
      out += n;
      from += n;
      left -= n;
      if (left > 0) seg++;
    }
  }
  unpinAll();
  return Num(env, 0);
}

}  // namespace

void InitGather(Napi::Env env, Napi::Object exports) { SetFn(env, exports, "gatherRows", GatherRows); }

}  // namespace vg
