// The Hopper kernel's device-side scheduler: a contiguous, cost-balanced partition (no host
// round trip, so it can be captured in a CUDA graph).
//
// Policy (the cost model FlashMLA publishes: a request costs its blocks + a fixed overhead):
// a (sequence, key block) list is cut into `pieces` contiguous pieces of about equal cost
// sum_i (ceil(len_i / 64) + overhead) / pieces; the `units` CTAs of a piece (one per 64-row
// tile) process it together. pieces = grid / units. A sequence is split only
// where a piece ends, so there are at most b + grid splits, most sequences stay whole (written
// directly, no partials), and every CTA gets the same work with a static assignment. One
// thread walks the sequences in order: O(b), which is why the plan caps b for this kernel.
#include "../cuda_check.hpp"
#include "hopper_config.cuh"
#include "hopper_launch.hpp"

namespace mla::cuda::hopper {
namespace {

using portable::ScheduleLayout;
using portable::SplitEntry;

__global__ void contiguous_scheduler_kernel(const int32_t* __restrict__ seqlens, int32_t batch, int32_t capacity,
                                            int32_t grid /* pieces */, int32_t overhead, ScheduleLayout layout) {
  if (threadIdx.x != 0) return;
  // Lengths outside [0, capacity] are clamped so no key outside the block table is read;
  // RunOptions::validate_indices reports them on the host instead.
  auto len_of = [&](int i) { return min(max(seqlens[i], 0), capacity); };
  long long total = 0;
  for (int i = 0; i < batch; ++i) total += (len_of(i) + kBlockN - 1) / kBlockN + overhead;
  // Every piece boundary inside a sequence adds a split (one more overhead): budget one per CTA,
  // else the pieces' overheads eat the quota and the last CTA inherits the rest.
  total += static_cast<long long>(overhead) * grid;
  const long long quota = (total + grid - 1) / grid;

  int cta = 0, n = 0;
  long long used = 0;
  layout.cta_first[0] = 0;
  for (int i = 0; i < batch; ++i) {
    const int len = len_of(i);
    const int blocks = (len + kBlockN - 1) / kBlockN;
    const int first = n;
    int pos = 0;
    do {
      // No room left for one block here: close this CTA's piece first.
      if (cta < grid - 1 && used > 0 && quota - used - overhead < 1) {
        layout.cta_first[++cta] = n;
        used = 0;
      }
      // The last CTA takes whatever is left in one piece per sequence.
      const long long room = cta == grid - 1 ? static_cast<long long>(blocks) : quota - used - overhead;
      const long long want = room < 1 ? 1 : room;
      const int take = blocks == 0 ? 0 : static_cast<int>(want < blocks - pos ? want : blocks - pos);
      SplitEntry e{};
      e.seq = i;
      e.begin = min(len, pos * kBlockN);
      e.end = min(len, (pos + take) * kBlockN);
      e.len = len;
      layout.entries[n++] = e;
      used += take + overhead;
      pos += take;
      if (used >= quota && cta < grid - 1) {
        layout.cta_first[++cta] = n;
        used = 0;
      }
    } while (pos < blocks);
    layout.seq_splits[i] = n - first;
    layout.seq_offset[i] = first;
    for (int k = first; k < n; ++k) layout.entries[k].slot = n - first > 1 ? k : -1;
  }
  for (int k = cta + 1; k <= grid; ++k) layout.cta_first[k] = n;
  layout.total_splits[0] = n;
}

}  // namespace

void launch_scheduler(const int32_t* cache_seqlens, int32_t batch, int32_t capacity_tokens, int32_t pieces,
                      const ScheduleLayout& layout, cudaStream_t stream) {
  contiguous_scheduler_kernel<<<1, 32, 0, stream>>>(cache_seqlens, batch, capacity_tokens, pieces, kBlockOverhead,
                                                    layout);
  check_launch("hopper contiguous_scheduler_kernel launch");
}

}  // namespace mla::cuda::hopper
