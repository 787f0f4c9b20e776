// Dequantization of 8-bit KV chunks into the kernels' 16-bit element type, shared by the
// portable and the Hopper kernels (docs/kv-formats.md has the formats).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "mma_sm80.cuh"

namespace mla::cuda::portable {

template <typename T>
struct ElemOps;
template <>
struct ElemOps<__nv_bfloat16> {
  __device__ static uint32_t pack(float a, float b) { return Mma<__nv_bfloat16>::pack(a, b); }
};
template <>
struct ElemOps<__half> {
  __device__ static uint32_t pack(float a, float b) { return Mma<__half>::pack(a, b); }
};

// Eight 8-bit KV values of one chunk as eight T (exact: fp8 values and int8 codes fit a 16-bit
// float), times `scale` (fp8_ds_mla's group scale, a power of two: still exact). fp8 pairs go
// through cuda_fp8.h's e4m3x2 -> half2 conversion (one instruction on sm_89+, emulated before).
template <typename T>
__device__ __forceinline__ uint4 dequantize_chunk(uint2 raw, bool is_int8, float scale) {
  uint32_t out[4];
  const uint32_t words[2] = {raw.x, raw.y};
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const uint16_t two = static_cast<uint16_t>(words[k / 2] >> (16 * (k % 2)));
    float a, b;
    if (is_int8) {
      // 2^23 + (code + 128) as a float's bits, minus 2^23 + 128: exact, and cheaper than a
      // conversion instruction per value.
      a = __uint_as_float(0x4B000000u | ((two & 0xffu) ^ 0x80u)) - 8388736.f;
      b = __uint_as_float(0x4B000000u | ((two >> 8) ^ 0x80u)) - 8388736.f;
    } else {
      const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(two), __NV_E4M3);
      const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&h));
      a = f.x;
      b = f.y;
    }
    out[k] = ElemOps<T>::pack(a * scale, b * scale);
  }
  return make_uint4(out[0], out[1], out[2], out[3]);
}

// A bf16 pair (low half first) as a T pair: exact to bf16; to fp16 it rounds, and overflows past
// 65504 as any conversion to fp16 would.
template <typename T>
__device__ __forceinline__ uint32_t bf16x2_to(uint32_t word) {
  return ElemOps<T>::pack(__uint_as_float(word << 16), __uint_as_float(word & 0xFFFF0000u));
}

// Eight bf16 values (fp8_ds_mla's rope) as eight T: bf16x2_to's math per pair, written by 16-bit
// halves. (Written as four bf16x2_to calls it compiled to different PTX in the Hopper and portable
// kernels, a change not yet timed on a GPU.)
template <typename T>
__device__ __forceinline__ uint4 rope_chunk(uint2 lo, uint2 hi) {
  const uint16_t* a = reinterpret_cast<const uint16_t*>(&lo);
  const uint16_t* b = reinterpret_cast<const uint16_t*>(&hi);
  auto f = [](uint16_t bits) { return __uint_as_float(static_cast<uint32_t>(bits) << 16); };
  return make_uint4(ElemOps<T>::pack(f(a[0]), f(a[1])), ElemOps<T>::pack(f(a[2]), f(a[3])),
                    ElemOps<T>::pack(f(b[0]), f(b[1])), ElemOps<T>::pack(f(b[2]), f(b[3])));
}

// An fp16 pair (as its bits) times `s`: fp8_ds_mla's group scales on the sm_90 kernels' fp16 path.
__device__ __forceinline__ uint32_t scale_f16x2(uint32_t pair, __half2 s) {
  const __half2 r = __hmul2(*reinterpret_cast<const __half2*>(&pair), s);
  return *reinterpret_cast<const uint32_t*>(&r);
}

}  // namespace mla::cuda::portable
