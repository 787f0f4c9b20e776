// The narrow kernel's shared memory (narrow_config.cuh sizes it): its carve-up, and the page
// ring that thread 0 fills, one bulk copy per page, in the order the math takes the pages.
#pragma once

#include <cstdint>

#include "../hopper/hopper_ptx.cuh"
#include "../portable/portable_launch.hpp"
#include "narrow_config.cuh"

namespace mla::cuda::hopper_narrow {

using hopper::mbar_arrive;
using hopper::mbar_expect_tx;
using hopper::mbar_wait;
using hopper::smem_u32;
using portable::DecodeParams;
using portable::ScheduleLayout;
using portable::SplitEntry;

template <class S>
struct NarrowSmem {
  uint32_t stages, qt, pt, bars, col_max_addr;
  unsigned char* qt_ptr;
  unsigned char* pt_ptr;
  float* col_max;    // [kCols][kWarps]: each warp's column maxima; reused for the column sums at the end
  float* col_scale;  // [kCols]
  __device__ uint32_t stage(int s) const { return stages + s * S::kStageBytes; }
  __device__ uint32_t full(int s) const { return bars + 8u * s; }
  __device__ uint32_t empty(int s) const { return bars + 8u * (S::kStages + s); }
  __device__ static NarrowSmem carve(unsigned char* smem) {
    NarrowSmem sm;
    sm.stages = smem_u32(smem);
    sm.qt_ptr = smem + S::kStages * S::kStageBytes;
    sm.qt = sm.stages + S::kStages * S::kStageBytes;
    sm.pt_ptr = sm.qt_ptr + S::kQBytes;
    sm.pt = sm.qt + S::kQBytes;
    sm.col_max = reinterpret_cast<float*>(sm.pt_ptr + S::kPBytes);
    sm.col_max_addr = smem_u32(sm.col_max);
    sm.col_scale = sm.col_max + S::kWarps * S::kCols;
    sm.bars = smem_u32(sm.col_max + S::kXchFloats);
    return sm;
  }
};

// The CTA's pages in the math's order (items, then blocks); each page number is read from the
// block table one page before it is needed, so nothing waits on that load.
struct PageCursor {
  int item = 0, item_end = 0, blk = 0, n_tiles = 0, page = 0;
  const int* pages = nullptr;
  __device__ bool more() const { return item < item_end; }
  __device__ void start(const DecodeParams& p, const ScheduleLayout& layout, int item_begin, int end) {
    item = item_begin - 1;
    item_end = end;
    blk = n_tiles = 0;
    advance(p, layout);
  }
  __device__ void advance(const DecodeParams& p, const ScheduleLayout& layout) {
    if (++blk >= n_tiles) {
      blk = 0;
      n_tiles = 0;
      while (n_tiles == 0 && ++item < item_end) {  // items without keys have no pages
        const SplitEntry e = layout.entries[item];
        n_tiles = (e.end - e.begin + kBlockN - 1) / kBlockN;
        pages = p.block_table + e.seq * p.bt_stride + e.begin / kBlockN;  // splits start on pages
      }
    }
    if (more()) page = __ldg(pages + blk);
  }
};

// One bulk copy (the TMA's non-tensor form) of `bytes` from global memory into shared memory,
// counted on `bar`, with an L2 cache policy.
__device__ __forceinline__ void bulk_copy(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar, uint64_t policy) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;\n" ::"r"(dst),
      "l"(src), "r"(bytes), "r"(bar), "l"(policy)
      : "memory");
}

// Thread 0's loads: the next page to bring into a stage, as one contiguous copy (the page's 64
// token rows as they are in memory). (64 x 128-byte TMA boxes per 128 columns reached 85% of the
// copy ceiling with no math at all; an L2 prefetch of the pages 4 or 8 ahead made the b 128,
// h_q 16, 8k decode 15% and 48% slower; four copies of a quarter page each, 0-8% slower:
// docs/perf/h200.md.)
struct PageLoader {
  PageCursor load;
  uint64_t policy = 0;
  __device__ bool more() const { return load.more(); }
  __device__ void start(const DecodeParams& p, const ScheduleLayout& layout, int item_begin, int end) {
    // Each page is read by this CTA alone, once (evict_normal measured 3-5% slower).
    policy = hopper::evict_first_policy();
    load.start(p, layout, item_begin, end);
  }
  // Pages issued by issue_until (page v goes to stage v % kStages). The N = 16 step calls issue()
  // itself after the first two pages, so there this stays at 2.
  int issued = 0;
  template <int kProbeMode, class S>
  __device__ void issue(const NarrowSmem<S>& sm, int s, const DecodeParams& p, const ScheduleLayout& layout) {
    if constexpr (kProbeMode == 2) {
      mbar_arrive(sm.full(s));
    } else {
      mbar_expect_tx(sm.full(s), S::kStageBytes);
      const unsigned char* src = static_cast<const unsigned char*>(p.kv) + static_cast<int64_t>(load.page) * p.kv_stride_block;
      if (p.kv_stride_token == S::kTokenBytes) {  // a dense page: one copy of its 36 (41) KiB
        bulk_copy(sm.stage(s), src, S::kStageBytes, sm.full(s), policy);
      } else {  // padded token rows: one copy per token
        for (int t = 0; t < kBlockN; ++t)
          bulk_copy(sm.stage(s) + t * S::kTokenBytes, src + static_cast<int64_t>(t) * p.kv_stride_token, S::kTokenBytes,
                    sm.full(s), policy);
      }
    }
    load.advance(p, layout);
  }
  // Issues pages until `target` pages are out (or none is left), each once the stage's previous
  // occupant (page v - kStages) is released by every thread.
  template <int kProbeMode, class S>
  __device__ void issue_until(const NarrowSmem<S>& sm, int target, const DecodeParams& p, const ScheduleLayout& layout) {
    for (; issued < target && more(); ++issued) {
      const int s = issued % S::kStages;
      if (issued >= S::kStages) mbar_wait(sm.empty(s), ((issued - S::kStages) / S::kStages) & 1);
      issue<kProbeMode>(sm, s, p, layout);
    }
  }
};

}  // namespace mla::cuda::hopper_narrow
