// The Hopper kernel's device-side scheduler: a contiguous, cost-balanced partition (no host
// round trip, so it can be captured in a CUDA graph).
//
// Policy (the cost model FlashMLA publishes: a request costs its blocks + a fixed overhead):
// the (sequence, 64-key block) list is cut into `pieces` contiguous pieces of about equal cost;
// the `units` CTAs of a piece (one per 64-row tile) process it together, pieces = grid / units.
// Sequence i costs ceil(len_i / 64) + overhead and occupies [P_i, P_i + cost_i) of the cost
// line [0, T) (P_i: exclusive prefix sum); the line is cut at floor(k T / pieces). A sequence
// is split only where a piece ends, so there are at most b + pieces - 1 splits, most sequences
// stay whole (written directly, no partials), and every piece costs at most
// ceil(T / pieces) + overhead (the quota with one extra split budgeted per piece), with a
// static assignment. Where cutting into fewer pieces splits no sequence at all, it takes those
// (sched::aligned_pieces). The arithmetic, and why these bounds hold, is in hopper_schedule_math.hpp
// (shared with the host test tests/cuda/test_hopper_schedule_math.cpp).
//
// Parallel: one CTA of 128 to 1024 threads (by batch size), each owning at most 8 consecutive
// sequences (so b <= kMaxBatch = 8192 in one pass). A block-wide scan of the costs gives every
// sequence its P_i and T, hence its split count in closed form; a second scan of the split
// counts gives entry offsets. Each thread writes its sequences' first entries and the
// cta_first values they start; the further splits of sequences with many (one long sequence
// over all pieces) are spread over the whole CTA, one per thread.
#include <cstddef>

#include <cub/block/block_scan.cuh>

#include "../cuda_check.hpp"
#include "hopper_config.cuh"
#include "hopper_launch.hpp"
#include "hopper_schedule_math.hpp"

namespace mla::cuda::hopper {
namespace {

using portable::ScheduleLayout;
using portable::SplitEntry;

constexpr int kMaxThreads = 1024;
constexpr int kSeqsPerThread = 8;
static_assert(kMaxBatch <= kMaxThreads * kSeqsPerThread, "one pass of the scheduler must cover kMaxBatch");
static_assert(sched::kKeysPerBlock == kBlockN, "the schedule splits on KV block boundaries");
static_assert(kBlockOverhead >= 1, "hopper_schedule_math.hpp needs overhead >= 1");
// Entries are written as two 16-byte stores.
static_assert(sizeof(SplitEntry) == 32 && offsetof(SplitEntry, seq) == 0 && offsetof(SplitEntry, begin) == 4 &&
                  offsetof(SplitEntry, end) == 8 && offsetof(SplitEntry, slot) == 12 && offsetof(SplitEntry, len) == 16,
              "SplitEntry layout");

// A sequence with more than kInlineSplits splits goes on a list whose splits 1.. the whole CTA
// writes afterwards, one per thread. The list is only a speed-up: when it is full, the owning
// thread writes them itself.
constexpr int kInlineSplits = 2;
constexpr int kLongCapacity = 64;  // two per lane of the warp that scans the list
struct LongSeq {
  sched::Placement pl;
  int32_t seq;
  int32_t offset;
};

__device__ __forceinline__ void write_entry(const ScheduleLayout& layout, const sched::Partition& part,
                                            const sched::Placement& pl, int32_t seq, int32_t offset, int32_t s) {
  const sched::KeyRange r = sched::split_keys(part, pl, s);
  int4* dst = reinterpret_cast<int4*>(layout.entries + offset + s);
  dst[0] = make_int4(seq, r.begin, r.end, sched::slot_of(offset + s, pl.splits));
  dst[1] = make_int4(pl.len, 0, 0, 0);
  // Entry s >= 1 starts piece first_piece + s (the previous entry is the same sequence's, in
  // the piece before).
  if (s > 0) layout.cta_first[pl.first_piece + s] = offset + s;
}

// Splits of a thread's `count` consecutive sequences (lengths `len`, the first at `prefix` on
// the cost line) on partition `part`.
__device__ __forceinline__ int32_t splits_of(const sched::Partition& part, long long prefix,
                                             const int32_t (&len)[kSeqsPerThread], int count, int32_t overhead) {
  int32_t splits = 0;
#pragma unroll
  for (int t = 0; t < kSeqsPerThread; ++t) {
    if (t >= count) break;
    splits += sched::place(part, prefix, len[t], overhead).splits;
    prefix += sched::cost_of(len[t], overhead);
  }
  return splits;
}

template <int kSchedThreads>
__global__ void __launch_bounds__(kSchedThreads)
    contiguous_scheduler_kernel(const int32_t* __restrict__ seqlens, int32_t batch, int32_t capacity,
                                int32_t grid /* pieces */, int32_t overhead, ScheduleLayout layout) {
  using CostScan = cub::BlockScan<long long, kSchedThreads, cub::BLOCK_SCAN_WARP_SCANS>;
  using CountScan = cub::BlockScan<int32_t, kSchedThreads, cub::BLOCK_SCAN_WARP_SCANS>;
  __shared__ union {
    typename CostScan::TempStorage cost;
    typename CountScan::TempStorage count;
  } tmp;
  __shared__ LongSeq long_seqs[kLongCapacity];
  __shared__ int32_t long_end[kLongCapacity];
  __shared__ int32_t long_count;

  // Thread tid owns sequences [first, first + per_thread), per_thread = ceil(b / threads), so
  // small batches do not pile their work on a few threads.
  const int tid = static_cast<int>(threadIdx.x);
  const int per_thread = max(1, (batch + kSchedThreads - 1) / kSchedThreads);  // <= kSeqsPerThread
  const int first = tid * per_thread;
  const int last = min(batch, first + per_thread);  // one past this thread's last sequence
  if (tid == 0) long_count = 0;

  // Lengths outside [0, capacity] are clamped so no key outside the block table is read;
  // RunOptions::validate_indices reports them on the host instead. Only the lengths and two
  // scalars live across the scans (placements are recomputed) and the scans are the
  // warp-scan variant (the raking one spilled), so 1024 threads fit in 64 registers.
  int32_t len[kSeqsPerThread];
  long long cost = 0;
#pragma unroll
  for (int t = 0; t < kSeqsPerThread; ++t) {
    const int i = first + t;
    len[t] = i < last ? sched::clamp_len(seqlens[i], capacity) : 0;
    cost += i < last ? sched::cost_of(len[t], overhead) : 0;
  }
  long long prefix = 0, total = 0;  // P of this thread's first sequence; T
  CostScan(tmp.cost).ExclusiveSum(cost, prefix, total);

  // Fewer pieces when that splits no sequence (sched::aligned_pieces): count the splits of
  // this thread's sequences on that partition, summed over the block.
  int32_t pieces = grid;
  const int32_t aligned = sched::aligned_pieces(batch, grid);
  if (aligned < grid) {
    const int32_t alt_splits =
        splits_of(sched::make_partition(total, aligned), prefix, len, last - first, overhead);
    __syncthreads();  // tmp is reused
    int32_t ignored = 0, alt_entries = 0;
    CountScan(tmp.count).ExclusiveSum(alt_splits, ignored, alt_entries);
    if (alt_entries == batch) pieces = aligned;
  }
  const sched::Partition part = sched::make_partition(total, pieces);

  const int32_t splits = splits_of(part, prefix, len, last - first, overhead);
  __syncthreads();  // tmp is reused
  int32_t offset = 0, entries = 0;  // first entry of this thread's first sequence; all entries
  CountScan(tmp.count).ExclusiveSum(splits, offset, entries);

  // cta_first[k] for the pieces whose first entry is a sequence's first entry: the pieces
  // after the one of the previous sequence's last entry, up to this entry's.
  int32_t prev_piece = first < last ? part.piece_before(prefix) : 0;
#pragma unroll
  for (int t = 0; t < kSeqsPerThread; ++t) {
    const int i = first + t;
    if (i >= last) break;
    const sched::Placement pl = sched::place(part, prefix, len[t], overhead);
    layout.seq_splits[i] = pl.splits;
    layout.seq_offset[i] = offset;
    for (int k = prev_piece + 1; k <= pl.first_piece; ++k) layout.cta_first[k] = offset;
    prev_piece = pl.first_piece + pl.splits - 1;
    write_entry(layout, part, pl, i, offset, 0);
    if (pl.splits > 1) {
      int slot = kLongCapacity;
      if (pl.splits - 1 > kInlineSplits) slot = atomicAdd(&long_count, 1);
      if (slot < kLongCapacity) {
        long_seqs[slot] = LongSeq{pl, i, offset};
      } else {
        for (int s = 1; s < pl.splits; ++s) write_entry(layout, part, pl, i, offset, s);
      }
    }
    prefix += sched::cost_of(len[t], overhead);
    offset += pl.splits;
  }
  // Pieces past the last entry's (only when T < grid), and the end of the last piece.
  for (int k = part.pieces + tid; k <= grid; k += kSchedThreads) layout.cta_first[k] = entries;
  if (tid == 0) layout.total_splits[0] = entries;

  // The listed sequences' splits 1..: (list index, split) pairs spread over all threads.
  // long_end[l] = splits of list entries 0..l past their first (inclusive prefix, one warp).
  __syncthreads();
  const int n_long = min(long_count, kLongCapacity);
  if (n_long == 0) return;
  if (tid < 32) {
    const int a = 2 * tid < n_long ? long_seqs[2 * tid].pl.splits - 1 : 0;
    const int b = 2 * tid + 1 < n_long ? long_seqs[2 * tid + 1].pl.splits - 1 : 0;
    int sum = a + b;
#pragma unroll
    for (int d = 1; d < 32; d *= 2) {
      const int up = __shfl_up_sync(0xffffffffu, sum, d);
      if (tid >= d) sum += up;
    }
    long_end[2 * tid] = sum - b;
    long_end[2 * tid + 1] = sum;
  }
  __syncthreads();
  const int n_more = long_end[n_long - 1];
  for (int f = tid; f < n_more; f += kSchedThreads) {
    int lo = 0, hi = n_long - 1;  // the first list entry with long_end > f
    while (lo < hi) {
      const int mid = (lo + hi) / 2;
      if (long_end[mid] > f) hi = mid;
      else lo = mid + 1;
    }
    const LongSeq& ls = long_seqs[lo];
    write_entry(layout, part, ls.pl, ls.seq, ls.offset, f - (lo > 0 ? long_end[lo - 1] : 0) + 1);
  }
}

}  // namespace

void launch_scheduler(const int32_t* cache_seqlens, int32_t batch, int32_t capacity_tokens, int32_t pieces,
                      const ScheduleLayout& layout, cudaStream_t stream) {
  if (batch < 0 || batch > kMaxBatch || pieces < 1)
    fail(ErrorCode::internal, "cuda: hopper launch_scheduler: batch " + std::to_string(batch) + " (max " +
                                  std::to_string(kMaxBatch) + "), pieces " + std::to_string(pieces) + " (min 1)");
  // The CTA's size follows the batch: the scans cost more with more threads, each sequence a
  // thread owns adds a serial step. One sequence per thread up to b = 512, then 2 per thread
  // on 512 threads (faster than 1024 threads at b = 1024 on an H100), then 1024 threads.
  const int threads = batch <= 128 ? 128 : batch <= 256 ? 256 : batch <= 1024 ? 512 : kMaxThreads;
  auto kernel = threads == 128   ? contiguous_scheduler_kernel<128>
                : threads == 256 ? contiguous_scheduler_kernel<256>
                : threads == 512 ? contiguous_scheduler_kernel<512>
                                 : contiguous_scheduler_kernel<kMaxThreads>;
  kernel<<<1, threads, 0, stream>>>(cache_seqlens, batch, capacity_tokens, pieces, kBlockOverhead, layout);
  check_launch("hopper contiguous_scheduler_kernel launch");
}

}  // namespace mla::cuda::hopper
