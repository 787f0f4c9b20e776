// fp16 tensor-core input for the 8-bit caches (KvMma), and the query's conversion to fp16 that it
// needs (QueryToFp16).
//
// fp8 e4m3 values and int8 codes are exact in fp16, and reach it in one or two instructions per
// pair (to bf16: four), which is what limits the producer warps that dequantize; fp8_ds_mla's
// values take one more (times the group's power-of-two scale, exact in fp16's range) and its
// bf16 rope is converted to fp16 in place. The query
// (bf16, or fp16 times int8's per-channel scales) is then rounded to fp16 once, each row first
// multiplied by the power of two 2^e_r that puts its largest magnitude in [2^14, 2^15): no value
// overflows, every value above 2^-28 of the row's largest keeps fp16's 11 bits (bf16 has 8), and S is scaled back by 2^-e_r together with the softmax scale. P is in [0, 1] and
// rounds to fp16 no worse than to bf16 above 2^-14, which is where the row sums are decided.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "../portable/portable_launch.hpp"
#include "hopper_config.cuh"
#include "hopper_ptx.cuh"
#include "hopper_smem.cuh"

namespace mla::cuda::hopper {

template <typename T, portable::KvRead R>
struct KvMma {
  using type = T;
};
template <typename T>
struct KvMma<T, portable::KvRead::fp8_per_tensor> {
  using type = __half;
};
template <typename T>
struct KvMma<T, portable::KvRead::int8_per_channel> {
  using type = __half;
};
template <typename T>
struct KvMma<T, portable::KvRead::fp8_ds_mla> {
  using type = __half;
};

template <typename T, portable::KvRead R>
struct QueryToFp16 {
  static constexpr bool kInt8 = R == portable::KvRead::int8_per_channel;
  // The rows' largest magnitudes (float bits; non-negative floats order as integers), one set per
  // item parity, after fp8_ds_mla's scales (and int8's 512 output-column scales) in the scale area.
  __device__ static uint32_t* row_max(const Smem& sm, int parity) {
    return reinterpret_cast<uint32_t*>(sm.scales_ptr + kRowMaxOffset) + parity * kRows;
  }
  static_assert(kDv * 4 <= kRowMaxOffset && kRowMaxOffset + 2 * kRows * 4 <= kScaleAreaBytes,
                "the row maxima fit the scale area, after the scales");
  __device__ static float channel_scale(const float* kv_scale, int col) { return kInt8 ? __ldg(kv_scale + col) : 1.f; }
  __device__ static unsigned char* chunk_of(unsigned char* q_s, int idx) {
    const int r = idx / (kDqk / 8), ch = idx % (kDqk / 8);
    return q_s + (ch / 8) * kBoxBytes + swz(r, ch % 8);
  }
  // The biased exponent of a row's maximum, clamped so 2^(14 - e) and its inverse are normal.
  __device__ static int row_exponent(const Smem& sm, int row, int parity) {
    const int e = static_cast<int>((row_max(sm, parity)[row] >> 23) & 0xFF) - 127;
    return min(max(e, -112), 126);
  }

  // Before the first item: both sets of maxima zero (the item's first barrier orders it).
  __device__ static void init(const Smem& sm, int tid) {
    if (tid < 2 * kRows) row_max(sm, 0)[tid] = 0;
  }
  // Pass 1 (after the Q tile landed): this thread's chunks' magnitudes into the row maxima;
  // the other parity's set (last read in the previous item) is zeroed for the next item.
  __device__ static void convert(unsigned char* q_s, const Smem& sm, const float* kv_scale, int tid, int parity) {
    if (tid < kRows) row_max(sm, parity ^ 1)[tid] = 0;
    for (int i = 0; i < kQChunksPerThread; ++i) {
      const int idx = tid + i * kMathThreads;
      const uint4 v = *reinterpret_cast<const uint4*>(chunk_of(q_s, idx));
      const T* x = reinterpret_cast<const T*>(&v);
      const int col0 = (idx % (kDqk / 8)) * 8;
      float m = 0.f;
#pragma unroll
      for (int k = 0; k < 8; ++k) m = fmaxf(m, fabsf(static_cast<float>(x[k]) * channel_scale(kv_scale, col0 + k)));
      if (m > 0.f) atomicMax(row_max(sm, parity) + idx / (kDqk / 8), __float_as_uint(m));
    }
  }
  // Pass 2 (every row's maximum is in): the chunks as fp16, times 2^(14 - e_r).
  __device__ static void rescale(unsigned char* q_s, const Smem& sm, const float* kv_scale, int tid, int parity) {
    for (int i = 0; i < kQChunksPerThread; ++i) {
      const int idx = tid + i * kMathThreads;
      unsigned char* chunk = chunk_of(q_s, idx);
      const uint4 v = *reinterpret_cast<const uint4*>(chunk);
      const T* x = reinterpret_cast<const T*>(&v);
      const int col0 = (idx % (kDqk / 8)) * 8;
      const float f = __uint_as_float(static_cast<uint32_t>(127 + 14 - row_exponent(sm, idx / (kDqk / 8), parity)) << 23);
      uint32_t out[4];
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const __half2 h = __floats2half2_rn(static_cast<float>(x[2 * k]) * channel_scale(kv_scale, col0 + 2 * k) * f,
                                            static_cast<float>(x[2 * k + 1]) * channel_scale(kv_scale, col0 + 2 * k + 1) * f);
        out[k] = *reinterpret_cast<const uint32_t*>(&h);
      }
      *reinterpret_cast<uint4*>(chunk) = make_uint4(out[0], out[1], out[2], out[3]);
    }
  }
  // 2^(e_r - 14): what S of row `row` is multiplied by to undo the row's factor.
  __device__ static float row_factor(const Smem& sm, int row, int parity) {
    return __uint_as_float(static_cast<uint32_t>(127 - 14 + row_exponent(sm, row, parity)) << 23);
  }
};

}  // namespace mla::cuda::hopper
