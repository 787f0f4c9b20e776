#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../cuda_check.hpp"
#include "merge_launch.hpp"

namespace mla::cuda {
namespace {

constexpr int kThreads = 128;

__device__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ float to_float(__half x) { return __half2float(x); }
template <typename T>
__device__ T from_float(float x);
template <>
__device__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <>
__device__ __half from_float<__half>(float x) { return __float2half_rn(x); }

// One block per output row (sequence, query token, head). lse +inf marks a rank that saw no
// key of the row (the operator's empty result): it weighs nothing.
template <typename T>
__global__ void __launch_bounds__(kThreads) context_merge_kernel(const ContextMergeParams p) {
  const int64_t row = blockIdx.x;  // (i * s_q + t) * h_q + h
  const int64_t h = row % p.h_q, t = (row / p.h_q) % p.s_q, i = row / (p.h_q * p.s_q);
  const int64_t lse_index = (i * p.h_q + h) * p.s_q + t;
  const int64_t rows = p.batch * p.s_q * p.h_q, lse_count = rows;
  float mx = -INFINITY;
  bool nan = false;
  for (int k = 0; k < p.ranks; ++k) {
    const float x = p.gathered_lse[k * lse_count + lse_index];
    if (isnan(x)) nan = true;
    else if (x != INFINITY) mx = fmaxf(mx, x);
  }
  T* out = static_cast<T*>(p.out) + row * p.width;
  if (nan || mx == -INFINITY) {
    for (int d = threadIdx.x; d < p.width; d += kThreads) out[d] = from_float<T>(nan ? NAN : 0.f);
    if (threadIdx.x == 0) p.lse[lse_index] = nan ? NAN : INFINITY;
    return;
  }
  float sum = 0.f;
  for (int k = 0; k < p.ranks; ++k) {
    const float x = p.gathered_lse[k * lse_count + lse_index];
    if (x != INFINITY) sum += expf(x - mx);
  }
  const T* in = static_cast<const T*>(p.gathered_out);
  for (int d = threadIdx.x; d < p.width; d += kThreads) {
    float acc = 0.f;
    for (int k = 0; k < p.ranks; ++k) {
      const float x = p.gathered_lse[k * lse_count + lse_index];
      if (x != INFINITY) acc += expf(x - mx) * to_float(in[(k * rows + row) * p.width + d]);
    }
    out[d] = from_float<T>(acc / sum);
  }
  if (threadIdx.x == 0) p.lse[lse_index] = mx + logf(sum);
}

}  // namespace

void launch_context_merge(portable::Elem elem, const ContextMergeParams& p, cudaStream_t stream) {
  const int64_t rows = p.batch * p.s_q * p.h_q;
  if (rows == 0) return;
  if (elem == portable::Elem::bf16)
    context_merge_kernel<__nv_bfloat16><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(p);
  else
    context_merge_kernel<__half><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(p);
  check_launch("context_merge_kernel launch");
}

}  // namespace mla::cuda
