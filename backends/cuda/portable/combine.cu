// Merges the split-KV partials of sequences with more than one split: weights each split's
// normalised output by exp(lse_k - lse), lse = log(sum_k exp(lse_k)). One CTA per
// (query row, sequence); sequences with one split were written directly and exit at once.
#include <cmath>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../cuda_check.hpp"
#include "portable_launch.hpp"

namespace mla::cuda::portable {
namespace {

constexpr int kCombineThreads = kDv / 4;  // 4 output columns (one float4) per thread

template <typename T>
__device__ void store4(T* dst, float4 v);
template <>
__device__ void store4<__nv_bfloat16>(__nv_bfloat16* dst, float4 v) {
  __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
  uint2 packed{*reinterpret_cast<uint32_t*>(&lo), *reinterpret_cast<uint32_t*>(&hi)};
  *reinterpret_cast<uint2*>(dst) = packed;
}
template <>
__device__ void store4<__half>(__half* dst, float4 v) {
  __half2 lo = __floats2half2_rn(v.x, v.y), hi = __floats2half2_rn(v.z, v.w);
  uint2 packed{*reinterpret_cast<uint32_t*>(&lo), *reinterpret_cast<uint32_t*>(&hi)};
  *reinterpret_cast<uint2*>(dst) = packed;
}

template <typename T>
__global__ void __launch_bounds__(kCombineThreads) combine_kernel(const DecodeParams p, const ScheduleLayout layout) {
  const int row = blockIdx.x;  // t * h_q + head
  const int seq = blockIdx.y;
  const int n = layout.seq_splits[seq];
  if (n <= 1) return;
  const int first = layout.seq_offset[seq];
  const int64_t rows_per_seq = static_cast<int64_t>(p.s_q) * p.h_q;

  // Loads of different splits are independent: unrolled, they are in flight together (a
  // sequence can have dozens of splits with the Hopper kernel's schedule).
  float mx = -INFINITY;
#pragma unroll 8
  for (int k = 0; k < n; ++k) mx = fmaxf(mx, layout.partial_lse[(first + k) * rows_per_seq + row]);
  float sum = 0.f;
  if (mx != -INFINITY)
#pragma unroll 8
    for (int k = 0; k < n; ++k) sum += __expf(layout.partial_lse[(first + k) * rows_per_seq + row] - mx);
  const bool empty = !(sum > 0.f);
  const float lse = empty ? INFINITY : mx + logf(sum);

  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  if (!empty) {
#pragma unroll 8
    for (int k = 0; k < n; ++k) {
      const float lk = layout.partial_lse[(first + k) * rows_per_seq + row];
      if (lk == -INFINITY) continue;  // that split saw no key of this row; its partial is 0
      const float w = __expf(lk - lse);
      const float4 v = reinterpret_cast<const float4*>(layout.partial_out + ((first + k) * rows_per_seq + row) * kDv)[threadIdx.x];
      acc.x += w * v.x;
      acc.y += w * v.y;
      acc.z += w * v.z;
      acc.w += w * v.w;
    }
  }
  const int t = row / p.h_q, head = row % p.h_q;
  T* o = static_cast<T*>(p.out) + seq * p.out_stride_b + t * p.out_stride_t + head * p.out_stride_h;
  store4<T>(o + threadIdx.x * 4, acc);
  if (threadIdx.x == 0) p.lse[seq * p.lse_stride_b + head * p.lse_stride_h + t * p.lse_stride_t] = lse;
}

}  // namespace

void launch_combine(Elem elem, const DecodeParams& p, const ScheduleLayout& layout, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(p.s_q * p.h_q), static_cast<unsigned>(p.batch));
  if (elem == Elem::bf16)
    combine_kernel<__nv_bfloat16><<<grid, kCombineThreads, 0, stream>>>(p, layout);
  else
    combine_kernel<__half><<<grid, kCombineThreads, 0, stream>>>(p, layout);
  check_launch("combine_kernel launch");
}

size_t schedule_workspace_bytes(int64_t batch, int64_t max_splits, int64_t rows_per_seq) {
  auto align = [](size_t x) { return (x + 255) / 256 * 256; };
  size_t bytes = 2 * align(sizeof(int32_t));
  bytes += 2 * align(sizeof(int32_t) * static_cast<size_t>(batch));
  bytes += align(sizeof(SplitEntry) * static_cast<size_t>(max_splits));
  bytes += align(sizeof(float) * static_cast<size_t>(max_splits * rows_per_seq * kDv));
  bytes += align(sizeof(float) * static_cast<size_t>(max_splits * rows_per_seq));
  bytes += align(sizeof(int32_t) * static_cast<size_t>(max_splits + 1));
  return bytes;
}

ScheduleLayout carve_schedule_layout(void* base, int64_t batch, int64_t max_splits, int64_t rows_per_seq) {
  auto align = [](size_t x) { return (x + 255) / 256 * 256; };
  auto* p = static_cast<unsigned char*>(base);
  ScheduleLayout l;
  l.total_splits = reinterpret_cast<int32_t*>(p);
  p += align(sizeof(int32_t));
  l.work_counter = reinterpret_cast<int32_t*>(p);
  p += align(sizeof(int32_t));
  l.seq_splits = reinterpret_cast<int32_t*>(p);
  p += align(sizeof(int32_t) * static_cast<size_t>(batch));
  l.seq_offset = reinterpret_cast<int32_t*>(p);
  p += align(sizeof(int32_t) * static_cast<size_t>(batch));
  l.entries = reinterpret_cast<SplitEntry*>(p);
  p += align(sizeof(SplitEntry) * static_cast<size_t>(max_splits));
  l.partial_out = reinterpret_cast<float*>(p);
  p += align(sizeof(float) * static_cast<size_t>(max_splits * rows_per_seq * kDv));
  l.partial_lse = reinterpret_cast<float*>(p);
  p += align(sizeof(float) * static_cast<size_t>(max_splits * rows_per_seq));
  l.cta_first = reinterpret_cast<int32_t*>(p);
  return l;
}

}  // namespace mla::cuda::portable
