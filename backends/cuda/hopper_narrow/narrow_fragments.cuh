// The narrow kernel's register fragments: 8-bit bytes of a page in shared memory (as in global
// memory: 576 bytes per token) to fp16 wgmma A fragments, and the orders they imply
// (narrow_config.cuh).
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "../portable/portable_launch.hpp"
#include "narrow_config.cuh"

namespace mla::cuda::hopper_narrow {

// Byte offset of 16-byte chunk `chunk` (0..7) of row `row` in a 128B-swizzled box.
__device__ __forceinline__ uint32_t swz(int row, int chunk) { return row * 128 + ((chunk ^ (row & 7)) << 4); }

// Byte offset of 16-byte chunk `chunk` of the 128 dims [128 G, 128 G + 128) of token row `key` in
// a stage: the page as it is in memory, 576 bytes per token (dims 576-639 do not exist; the rope
// box's chunks 4-7 are never read). In 16-byte units a row is 36 = 4 mod 8, so S^T's load phase
// (keys g and g + 1 of a warp, chunks c = 0..3) hits 8 different bank groups.
__device__ __forceinline__ uint32_t page_chunk(int key, int G, int chunk) { return key * 576 + G * 128 + chunk * 16; }

// O^T += V^T P^T takes, at K-index j of a k-step, key pv_key(j) of its 16: the pairs (2c, 2c + 1)
// swapped for odd c, so the lanes c = 0..3 of a load phase read keys of both parities (bank groups
// 0 and 4 of a row start) instead of four even ones; 2-way conflicts remain on these loads (the
// thread's 16 / W dims depend on its row g only). Its own inverse.
__device__ __forceinline__ int pv_key(int j) { return j ^ ((j >> 1) & 1); }

// Two 8-bit values (byte `half` x 2 and the next of `word`) as an fp16 pair, low byte first:
// fp8 e4m3 by one cvt; int8 under a 0x64 exponent byte (1024 + code + 128), minus 1152. Both exact.
template <portable::KvRead R>
__device__ __forceinline__ uint32_t pair_to_f16x2(uint32_t word, int half) {
  if constexpr (R == portable::KvRead::int8_per_channel) {
    const uint32_t biased = word ^ 0x80808080u;
    uint32_t x = __byte_perm(biased, 0x64646464u, half ? 0x4342 : 0x4140);
    const __half2 v = __hsub2(*reinterpret_cast<const __half2*>(&x), __float2half2_rn(1152.f));
    return *reinterpret_cast<const uint32_t*>(&v);
  } else {
    uint32_t out;
    if (half)
      asm("{\n.reg .b16 lo, hi;\nmov.b32 {lo, hi}, %1;\ncvt.rn.f16x2.e4m3x2 %0, hi;\n}\n" : "=r"(out) : "r"(word));
    else
      asm("{\n.reg .b16 lo, hi;\nmov.b32 {lo, hi}, %1;\ncvt.rn.f16x2.e4m3x2 %0, lo;\n}\n" : "=r"(out) : "r"(word));
    return out;
  }
}

__device__ __forceinline__ uint32_t word_of(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// Q^T's position of dim d (0..639) in row n: S^T's k-step kk of box G takes, in its slots
// 2 c + e and 8 + 2 c + e, the bytes 2 kk + e of chunks c and c + 4 of the key's box row, i.e.
// dims 128 G + 16 c + 2 kk + e and 128 G + 64 + 16 c + 2 kk + e. Returns the byte offset in Q^T
// (10 boxes of N rows x 64 fp16, 128B-swizzled, `box_bytes` = N x 128 apart); d even (pairs stay
// together).
__device__ __forceinline__ uint32_t qt_offset(int n, int d, int box_bytes) {
  const int G = d / 128, r = d % 128, hi = r / 64, c = (r % 64) / 16, t = r % 16, kk = t / 2, e = t % 2;
  const int slot = 8 * hi + 2 * c + e;
  const int col = (kk % 4) * 16 + slot;  // element within the Q^T box row
  return (2 * G + kk / 4) * box_bytes + swz(n, col / 8) + (col % 8) * 2;
}

}  // namespace mla::cuda::hopper_narrow
