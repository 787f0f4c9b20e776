// The device-side scheduler: reads cache_seqlens on the device and writes the split-KV
// partition into the schedule's workspace, so schedule() needs no host round trip.
//
// Policy: all work items should cost about the same and fill the persistent grid once.
// chunk = max(min_chunk, ceil(sum(len) * units / target_items)), rounded up to `granule` keys
// (the kernel's key tile: 32 for the portable kernel, 64 = one KV block for the Hopper one);
// sequence i gets max(1, ceil(len_i / chunk)) splits. Then sum of splits <= target/units + b,
// the bound the workspace is sized for (see max_splits in the plan).
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "../cuda_check.hpp"
#include "decode_traits.cuh"

namespace mla::cuda::portable {
namespace {

constexpr int kSchedThreads = 1024;  // one CTA; lengths are read in passes of this many

__global__ void __launch_bounds__(kSchedThreads)
    scheduler_kernel(const int32_t* __restrict__ seqlens, int32_t batch, int32_t capacity, int32_t units,
                     int32_t target_items, int32_t min_chunk, int32_t granule, ScheduleLayout layout) {
  using Reduce = cub::BlockReduce<long long, kSchedThreads>;
  using Scan = cub::BlockScan<int32_t, kSchedThreads>;
  __shared__ union {
    typename Reduce::TempStorage reduce;
    typename Scan::TempStorage scan;
  } tmp;
  __shared__ long long total_keys;
  __shared__ int32_t running;

  // Lengths outside [0, capacity] are clamped so no key outside the block table is read;
  // RunOptions::validate_indices reports them on the host instead.
  auto len_of = [&](int i) { return min(max(seqlens[i], 0), capacity); };

  long long local = 0;
  for (int i = threadIdx.x; i < batch; i += kSchedThreads) local += len_of(i);
  const long long sum = Reduce(tmp.reduce).Sum(local);
  if (threadIdx.x == 0) {
    total_keys = sum;
    running = 0;
  }
  __syncthreads();
  long long chunk = (total_keys * units + target_items - 1) / max(target_items, 1);
  chunk = max(chunk, static_cast<long long>(min_chunk));
  chunk = (chunk + granule - 1) / granule * granule;

  for (int base = 0; base < batch; base += kSchedThreads) {
    const int i = base + threadIdx.x;
    const int len = i < batch ? len_of(i) : 0;
    const int n = i < batch ? max(1, static_cast<int>((len + chunk - 1) / chunk)) : 0;
    int offset = 0, pass_total = 0;
    Scan(tmp.scan).ExclusiveSum(n, offset, pass_total);
    offset += running;
    if (i < batch) {
      layout.seq_splits[i] = n;
      layout.seq_offset[i] = offset;
      for (int s = 0; s < n; ++s) {
        SplitEntry e{};
        e.seq = i;
        e.begin = static_cast<int32_t>(min(static_cast<long long>(len), s * chunk));
        e.end = static_cast<int32_t>(min(static_cast<long long>(len), (s + 1) * chunk));
        e.slot = n > 1 ? offset + s : -1;
        e.len = len;
        layout.entries[offset + s] = e;
      }
    }
    __syncthreads();  // everyone has read `running` and the scan storage
    if (threadIdx.x == 0) running += pass_total;
    __syncthreads();
  }
  if (threadIdx.x == 0) layout.total_splits[0] = running;
}

}  // namespace

void launch_scheduler(const int32_t* cache_seqlens, int32_t batch, int32_t capacity_tokens, int32_t units,
                      int32_t target_items, int32_t min_chunk, int32_t granule, const ScheduleLayout& layout,
                      cudaStream_t stream) {
  if (granule <= 0) granule = kBlockN;
  scheduler_kernel<<<1, kSchedThreads, 0, stream>>>(cache_seqlens, batch, capacity_tokens, units, target_items,
                                                    min_chunk, granule, layout);
  check_launch("scheduler_kernel launch");
}

}  // namespace mla::cuda::portable
