// The narrow kernel's register fragments: 8-bit bytes of a page in shared memory (as in global
// memory: 576 or 656 bytes per token) to fp16 wgmma A fragments (the orders: narrow_layout.hpp).
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "../portable/kv_dequant.cuh"
#include "../portable/portable_launch.hpp"
#include "narrow_config.cuh"
#include "narrow_layout.hpp"

namespace mla::cuda::hopper_narrow {

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

}  // namespace mla::cuda::hopper_narrow
