// Merges the split-KV partials of sequences with more than one split: weights each split's
// normalised output by exp(lse_k - lse), lse = log(sum_k exp(lse_k)). One CTA per
// (query row, sequence); sequences with one split were written directly and exit at once.
// The split LSEs are reduced in one pass (each thread a share of the splits, then the CTA) and
// the weights kept in shared memory, so the loads of the partials are the only long chain
// (several splits in flight per thread; for small batches several threads per output column).
#include <cmath>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../cuda_check.hpp"
#include "portable_launch.hpp"

namespace mla::cuda::portable {
namespace {

constexpr int kColThreads = kDv / 4;  // 4 output columns (one float4) per thread of a group
// With few rows to merge (small batch: one wave of CTAs, each latency-bound on its loads),
// kWideGroups groups of kColThreads threads each sum every kWideGroups-th split. With many
// rows, one group: the GPU is full of CTAs anyway, and wide CTAs cost occupancy (measured,
// docs/perf/h100.md: b2 h128 -3.8 us with 4 groups, b128 h64/h128 up to +9% with 4 groups;
// docs/perf/h200.md, seventh session: at b 128, h_q 16 (2048 rows, 2-3 splits each) the wide
// form took 13.6-20.4 us, and the decode 7-13% longer, than with one group).
constexpr int kWideGroups = 4;
#ifndef MLA_COMBINE_WIDE_MAX_ROWS
#define MLA_COMBINE_WIDE_MAX_ROWS 1024
#endif
constexpr int64_t kWideMaxRows = MLA_COMBINE_WIDE_MAX_ROWS;  // (sequence, row) CTAs up to which the wide form runs

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

// Online (max, sum of exp) pair: merging two gives the pair of the union.
struct LseAcc {
  float mx = -INFINITY, sum = 0.f;
  __device__ void add(float lse) {
    if (lse == -INFINITY) return;
    if (lse > mx) {
      sum = sum * __expf(mx - lse) + 1.f;
      mx = lse;
    } else {
      sum += __expf(lse - mx);
    }
  }
  __device__ void merge(LseAcc o) {
    if (o.mx == -INFINITY) return;
    if (mx == -INFINITY) {
      *this = o;
      return;
    }
    const float m = fmaxf(mx, o.mx);
    sum = sum * __expf(mx - m) + o.sum * __expf(o.mx - m);
    mx = m;
  }
};

template <int kGroups, typename T>
__global__ void __launch_bounds__(kColThreads * kGroups) combine_kernel(const DecodeParams p, const ScheduleLayout layout) {
  constexpr int kCombineThreads = kColThreads * kGroups;
  __shared__ LseAcc warp_acc[kCombineThreads / 32];
  __shared__ float weight[kCombineThreads];
  const int row = blockIdx.x;  // t * h_q + head
  const int seq = blockIdx.y;
  // The split counts come from the scheduler kernel, which completed before the decode kernel
  // started, so they may be read before the decode kernel's results: a CTA of a sequence with
  // one split leaves at once, on the SMs the decode kernel's tail has already freed, instead of
  // waiting for its last CTA (Nsight Compute: 7.6 us for 8192 such CTAs at b 64, h_q 128, run
  // alone; side by side 0-2% faster on the rows without splits, docs/perf/h200.md).
  const int n = layout.seq_splits[seq];
  if (n <= 1) return;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // Launched as a programmatic dependent of the decode kernel: wait for its results.
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
  const int first = layout.seq_offset[seq];
  const int64_t rows_per_seq = static_cast<int64_t>(p.s_q) * p.h_q;
  const float* lse_k = layout.partial_lse + first * rows_per_seq + row;

  // Thread k reads the LSEs of splits k, k + kCombineThreads, ...; the first it keeps for its weight.
  const float my_lse = threadIdx.x < n ? lse_k[threadIdx.x * rows_per_seq] : -INFINITY;
  LseAcc acc_lse;
  acc_lse.add(my_lse);
  for (int k = threadIdx.x + kCombineThreads; k < n; k += kCombineThreads) acc_lse.add(lse_k[k * rows_per_seq]);
#pragma unroll
  for (int off = 16; off > 0; off /= 2) {
    LseAcc other;
    other.mx = __shfl_xor_sync(0xffffffffu, acc_lse.mx, off);
    other.sum = __shfl_xor_sync(0xffffffffu, acc_lse.sum, off);
    acc_lse.merge(other);
  }
  if (threadIdx.x % 32 == 0) warp_acc[threadIdx.x / 32] = acc_lse;
  __syncthreads();
  LseAcc total = warp_acc[0];
#pragma unroll
  for (int w = 1; w < kCombineThreads / 32; ++w) total.merge(warp_acc[w]);
  const bool empty = !(total.sum > 0.f);
  const float lse = empty ? INFINITY : total.mx + logf(total.sum);

  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  const int group = threadIdx.x / kColThreads, col = threadIdx.x % kColThreads;
  if (!empty) {
    const float4* part = reinterpret_cast<const float4*>(layout.partial_out + (first * rows_per_seq + row) * kDv) + col;
    const int64_t split_stride = rows_per_seq * kDv / 4;  // float4s from one split's row to the next's
    // A split that saw no key of this row has weight 0 and its partial is skipped by a select,
    // not a branch, so the loads stay independent (several in flight per thread).
    auto weight_of = [&](float lk) { return lk == -INFINITY ? 0.f : __expf(lk - lse); };
    for (int k0 = 0; k0 < n; k0 += kCombineThreads) {
      const int count = min(kCombineThreads, n - k0);
      if (k0 > 0) __syncthreads();  // the previous chunk's weights are consumed
      if (threadIdx.x < count)
        weight[threadIdx.x] = weight_of(k0 == 0 ? my_lse : lse_k[(k0 + threadIdx.x) * rows_per_seq]);
      __syncthreads();
#pragma unroll 4
      for (int k = group; k < count; k += kGroups) {
        const float w = weight[k];
        const float4 v = part[(k0 + k) * split_stride];
        acc.x += w != 0.f ? w * v.x : 0.f;
        acc.y += w != 0.f ? w * v.y : 0.f;
        acc.z += w != 0.f ? w * v.z : 0.f;
        acc.w += w != 0.f ? w * v.w : 0.f;
      }
    }
  }
  // Sum the groups' partial sums; group 0 writes.
  __shared__ float4 group_sum[kGroups > 1 ? kGroups - 1 : 1][kColThreads];
  if (group > 0) group_sum[group - 1][col] = acc;
  __syncthreads();
  if (group > 0) return;
#pragma unroll
  for (int g = 0; g < kGroups - 1; ++g) {
    const float4 v = group_sum[g][col];
    acc.x += v.x;
    acc.y += v.y;
    acc.z += v.z;
    acc.w += v.w;
  }
  const int t = row / p.h_q, head = row % p.h_q;
  T* o = static_cast<T*>(p.out) + seq * p.out_stride_b + t * p.out_stride_t + head * p.out_stride_h;
  store4<T>(o + col * 4, acc);
  if (threadIdx.x == 0) p.lse[seq * p.lse_stride_b + head * p.lse_stride_h + t * p.lse_stride_t] = lse;
}

}  // namespace

void launch_combine(Elem elem, const DecodeParams& p, const ScheduleLayout& layout, cudaStream_t stream,
                    bool programmatic) {
  const int64_t rows = static_cast<int64_t>(p.s_q) * p.h_q * p.batch;
  const bool wide = rows <= kWideMaxRows;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>(p.s_q * p.h_q), static_cast<unsigned>(p.batch));
  config.blockDim = dim3(kColThreads * (wide ? kWideGroups : 1));
  config.stream = stream;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  config.numAttrs = programmatic ? 1 : 0;
  cudaError_t st;
  if (elem == Elem::bf16)
    st = wide ? cudaLaunchKernelEx(&config, combine_kernel<kWideGroups, __nv_bfloat16>, p, layout)
              : cudaLaunchKernelEx(&config, combine_kernel<1, __nv_bfloat16>, p, layout);
  else
    st = wide ? cudaLaunchKernelEx(&config, combine_kernel<kWideGroups, __half>, p, layout)
              : cudaLaunchKernelEx(&config, combine_kernel<1, __half>, p, layout);
  check(st, "combine_kernel launch");
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
