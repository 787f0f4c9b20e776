#include <algorithm>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../cuda_check.hpp"
#include "merge_launch.hpp"
#include "mla/context_merge_rules.hpp"

namespace mla::cuda {
namespace {

namespace rules = merge_rules;

constexpr int kThreads = 128;

__device__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ float to_float(__half x) { return __half2float(x); }
template <typename T>
__device__ T from_float(float x);
template <>
__device__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <>
__device__ __half from_float<__half>(float x) { return __float2half_rn(x); }

// Kernels over rows run one block per output row; row = (i * s_q + t) * h_q + h in out's order,
// and this is the same row's index in lse's [batch, h_q, s_q] order.
__device__ int64_t lse_index_of(const MergeRows& r, int64_t row) {
  const int64_t h = row % r.h_q, t = (row / r.h_q) % r.s_q, i = row / (r.h_q * r.s_q);
  return (i * r.h_q + h) * r.s_q + t;
}

// Writes one output row of kind `kind`; merged(d) gives the elements of a merged row.
template <typename T, typename Merged>
__device__ void write_row(const MergeRows& r, int64_t row, void* out_base, float* lse, int64_t lse_index, float mx,
                          float sum_w, Merged merged) {
  const rules::RowKind kind = rules::row_kind(sum_w);
  T* out = static_cast<T*>(out_base) + row * r.width;
  for (int d = threadIdx.x; d < r.width; d += kThreads)
    out[d] = from_float<T>(kind == rules::RowKind::merged ? merged(d) : rules::unmerged_out(kind));
  if (threadIdx.x == 0) lse[lse_index] = rules::row_lse(kind, mx, sum_w);
}

// All-gather form: every rank's packed partial side by side; the ranks' weights of the row in
// dynamic shared memory (ranks floats).
template <typename T>
__global__ void __launch_bounds__(kThreads) gathered_merge_kernel(const GatheredMergeParams p) {
  extern __shared__ float weights[];
  const int64_t row = blockIdx.x, lse_index = lse_index_of(p.rows, row);
  auto rank_lse = [&](int k) {
    return reinterpret_cast<const float*>(p.gathered + k * p.slot_bytes + p.lse_offset)[lse_index];
  };
  float mx = -INFINITY;
  for (int k = 0; k < p.ranks; ++k) mx = fmaxf(mx, rules::max_key(rank_lse(k)));
  for (int k = threadIdx.x; k < p.ranks; k += kThreads) weights[k] = rules::weight(rank_lse(k), mx);
  __syncthreads();
  float sum_w = 0.f;
  for (int k = 0; k < p.ranks; ++k) sum_w += weights[k];
  const int64_t element = row * p.rows.width;
  write_row<T>(p.rows, row, p.out, p.lse, lse_index, mx, sum_w, [&](int d) {
    float acc = 0.f;
    for (int k = 0; k < p.ranks; ++k)
      acc += rules::scaled(weights[k], to_float(reinterpret_cast<const T*>(p.gathered + k * p.slot_bytes)[element + d]));
    return acc / sum_w;
  });
}

// All-reduce form, step 1: what this rank puts into the row max.
__global__ void max_keys_kernel(const ReducedMergeParams p) {
  const int64_t n = p.rows.count();
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < n;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x)
    p.keys[j] = rules::max_key(p.lse[j]);
}

// Step 2 (keys now hold the row max): this rank's partial scaled by its weight, and the weight.
template <typename T>
__global__ void __launch_bounds__(kThreads) scale_partials_kernel(const ReducedMergeParams p) {
  const int64_t row = blockIdx.x, lse_index = lse_index_of(p.rows, row), element = row * p.rows.width;
  const float w = rules::weight(p.lse[lse_index], p.keys[lse_index]);
  const T* out = static_cast<const T*>(p.out);
  for (int d = threadIdx.x; d < p.rows.width; d += kThreads) p.sums[element + d] = rules::scaled(w, to_float(out[element + d]));
  if (threadIdx.x == 0) p.sums[p.rows.count() * p.rows.width + lse_index] = w;
}

// Step 3 (sums now hold every rank's): the merged row.
template <typename T>
__global__ void __launch_bounds__(kThreads) finish_reduced_kernel(const ReducedMergeParams p) {
  const int64_t row = blockIdx.x, lse_index = lse_index_of(p.rows, row), element = row * p.rows.width;
  const float sum_w = p.sums[p.rows.count() * p.rows.width + lse_index];
  write_row<T>(p.rows, row, p.out, p.lse, lse_index, p.keys[lse_index], sum_w,
               [&](int d) { return p.sums[element + d] / sum_w; });
}

}  // namespace

void launch_gathered_merge(portable::Elem elem, const GatheredMergeParams& p, cudaStream_t stream) {
  const int64_t rows = p.rows.count();
  if (rows == 0) return;
  const size_t shared = static_cast<size_t>(p.ranks) * sizeof(float);
  if (elem == portable::Elem::bf16)
    gathered_merge_kernel<__nv_bfloat16><<<static_cast<unsigned>(rows), kThreads, shared, stream>>>(p);
  else
    gathered_merge_kernel<__half><<<static_cast<unsigned>(rows), kThreads, shared, stream>>>(p);
  check_launch("gathered_merge_kernel launch");
}

void launch_max_keys(const ReducedMergeParams& p, cudaStream_t stream) {
  const int64_t n = p.rows.count();
  if (n == 0) return;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((n + 255) / 256, 1024));
  max_keys_kernel<<<blocks, 256, 0, stream>>>(p);
  check_launch("max_keys_kernel launch");
}

void launch_scale_partials(portable::Elem elem, const ReducedMergeParams& p, cudaStream_t stream) {
  const int64_t rows = p.rows.count();
  if (rows == 0) return;
  if (elem == portable::Elem::bf16)
    scale_partials_kernel<__nv_bfloat16><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(p);
  else
    scale_partials_kernel<__half><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(p);
  check_launch("scale_partials_kernel launch");
}

void launch_finish_reduced(portable::Elem elem, const ReducedMergeParams& p, cudaStream_t stream) {
  const int64_t rows = p.rows.count();
  if (rows == 0) return;
  if (elem == portable::Elem::bf16)
    finish_reduced_kernel<__nv_bfloat16><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(p);
  else
    finish_reduced_kernel<__half><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(p);
  check_launch("finish_reduced_kernel launch");
}

}  // namespace mla::cuda
