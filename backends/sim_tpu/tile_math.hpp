// The BDC's arithmetic on fp32 tiles. One source over Highway (tile_math_hwy.cpp), compiled for
// every SIMD target of the architecture; tile_math_for_this_cpu() returns Highway's pick for
// this CPU (hwy::SetSupportedTargetsForTest changes the pick, which is how tests cover each).
#pragma once

#include <cstdint>

#include "mla/dtype.hpp"
#include "mla/kv_format.hpp"

namespace mla::sim_tpu {

struct TileMath {
  // s[r * n + j] = scale * <q[r], k[j]> for rows r < rows, keys j < n; rows of q and k have d floats.
  void (*scores)(const float* q, int rows, const float* k, int n, int d, float scale, float* s);
  // acc[r * d_v + c] += sum_j p[r * n + j] * v[j * ldv + c]
  void (*accumulate)(const float* p, int rows, int n, const float* v, int ldv, int d_v, float* acc);
  // dst[c] += sum_k x[k] * w[k * ldw + c] for k < depth, c < width; w in `dtype` (projection
  // weights); `row` is scratch of `width` floats.
  void (*project)(const float* x, int depth, const void* w, int64_t ldw, DType dtype, int width, float* dst, float* row);
  // n elements of a float tensor (bf16 / fp16 / fp32) to fp32.
  void (*widen)(const void* src, DType dtype, int64_t n, float* dst);
  // One KV token of any format (d_c + d_r values) to fp32, every scale applied: the Highway
  // dequantization of mla/simd/widen-inl.h, equal to the format traits' scalar definition.
  void (*dequantize_token)(const void* token, KvFormat format, const float* kv_scale, int64_t d_c, int64_t d_r,
                           float* dst);
  const char* target;  // the Highway target these were compiled for ("AVX3", "AVX2", "NEON", ...)
};

const TileMath& tile_math_for_this_cpu();

// n elements of a float tensor (bf16 / fp16 / fp32) to fp32, with this CPU's tile math.
void convert_to_f32(const void* src, DType dtype, int64_t n, float* dst);

}  // namespace mla::sim_tpu
