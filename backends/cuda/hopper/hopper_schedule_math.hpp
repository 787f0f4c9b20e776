// The arithmetic of the Hopper kernel's contiguous split-KV schedule (hopper_scheduler.cu): a
// sequence's cost, where it lands on the cost line, its split count and each split's key range,
// all in closed form from the exclusive prefix of the costs before it. Plain C++ (no CUDA
// header), __host__ __device__ under nvcc, so tests/cuda/test_hopper_schedule_math.cpp runs the
// very same code on a host without a GPU.
//
// The cost line. Sequence i costs c_i = blocks_i + overhead (blocks_i = ceil(len_i / 64), one
// point per 64-key block) and occupies [P_i, P_i + c_i) of the line [0, T), P_i = c_0 + ... +
// c_{i-1}, T = sum c_i: first its `overhead` points, then its blocks. The line is cut into
// n = min(grid, T) pieces at B_k = floor(k T / n), k = 0..n (lengths floor or ceil of T / n, so
// at least 1); pieces n..grid-1 (only when T < grid) stay empty.
//
// Every split (entry) has an anchor point, its first block; the single entry of a zero-length
// sequence anchors on the sequence's last overhead point. An entry belongs to the piece holding
// its anchor, and a sequence's blocks that fall in one piece form one entry. Consequences:
//   - anchors increase along the (sequence, block) list, so entries are in sequence order and
//     their pieces never decrease: CTA piece k takes entries [cta_first[k], cta_first[k + 1]);
//   - a sequence is split only at a B_k strictly inside its blocks, and each B_k splits at most
//     one sequence: at most batch + n - 1 <= batch + grid - 1 entries;
//   - cost of piece k (sum over its entries of overhead + blocks) <= ceil(T / grid) + overhead,
//     the current quota (see quota() below): the blocks lie in [B_k, B_{k+1}), the overheads of
//     the sequences starting there lie in [B_k - overhead, B_{k+1}) without overlapping them,
//     and only one of these overflows past B_k, or else one split continues from piece k - 1
//     and pays one overhead outside the line;
//   - points that are not an anchor come in runs of at most `overhead` (a sequence's overhead
//     before its first block), so a piece longer than `overhead` holds at least one entry: no
//     piece is empty when T >= (overhead + 1) x grid.
// Requirements: overhead >= 1, grid >= 1, T x grid < 2^63 (batch <= 8192 and 2^31-key
// sequences give T < 2^39).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define MLA_SCHED_HD __host__ __device__ __forceinline__
#else
#define MLA_SCHED_HD inline
#endif

namespace mla::cuda::hopper::sched {

inline constexpr int32_t kKeysPerBlock = 64;  // = hopper kBlockN (static_assert in hopper_scheduler.cu)

// a / b for a >= 0, b > 0; a 32-bit division when both fit (64-bit division is a long
// software sequence on the GPU).
MLA_SCHED_HD int64_t div_floor(int64_t a, int64_t b) {
  if (((static_cast<uint64_t>(a) | static_cast<uint64_t>(b)) >> 32) == 0)
    return static_cast<int64_t>(static_cast<uint32_t>(a) / static_cast<uint32_t>(b));
  return a / b;
}

// Lengths outside [0, capacity] are clamped so no key outside the block table is read.
MLA_SCHED_HD int32_t clamp_len(int32_t len, int32_t capacity) {
  return len < 0 ? 0 : (len > capacity ? capacity : len);
}
MLA_SCHED_HD int32_t blocks_of(int32_t len) {
  return static_cast<int32_t>((static_cast<int64_t>(len) + kKeysPerBlock - 1) / kKeysPerBlock);
}
MLA_SCHED_HD int64_t cost_of(int32_t len, int32_t overhead) { return static_cast<int64_t>(blocks_of(len)) + overhead; }

// The bound on any piece's cost: ceil(T / grid) + overhead (= ceil((T + overhead x grid) / grid),
// the budget of one extra split per piece).
MLA_SCHED_HD int64_t quota(int64_t total, int32_t grid, int32_t overhead) {
  return div_floor(total + grid - 1, grid) + overhead;
}

// The cost line [0, total) cut into `pieces` = min(grid, total) pieces.
// (The structs below are trivial, without member initializers, so the kernel can keep them in
// shared memory.)
struct Partition {
  int64_t total;
  int32_t pieces;
  // B_k, k in [0, pieces]: piece k is [boundary(k), boundary(k + 1)).
  MLA_SCHED_HD int64_t boundary(int32_t k) const { return div_floor(static_cast<int64_t>(k) * total, pieces); }
  // The piece holding point y in [0, total): the largest k with B_k <= y.
  MLA_SCHED_HD int32_t piece_of(int64_t y) const {
    return static_cast<int32_t>(div_floor((y + 1) * pieces - 1, total));
  }
  // The piece of the last point before `prefix` (the previous sequence's last entry), -1 at 0.
  MLA_SCHED_HD int32_t piece_before(int64_t prefix) const { return prefix == 0 ? -1 : piece_of(prefix - 1); }
};
MLA_SCHED_HD Partition make_partition(int64_t total, int32_t grid) {
  Partition p{};
  p.total = total;
  p.pieces = static_cast<int32_t>(total < grid ? total : grid);
  return p;
}

// Pieces that keep sequences whole: when about equal sequences are fewer than the pieces, or
// not a multiple of them, cutting the line into `grid` pieces splits nearly every sequence, and
// the split partials plus the combine kernel that merges them cost more (5-10% at b 64-128 on
// an H200, docs/perf/h200.md) than leaving a few pieces empty. With m = ceil(batch / grid)
// sequences a piece, n = ceil(batch / m) pieces cut equal sequences exactly at their ends. The
// scheduler takes n only when, cut into n pieces, no sequence is split at all, and n is at
// least 95% of grid (the work of a piece grows by at most grid / n); else it takes grid.
MLA_SCHED_HD int32_t aligned_pieces(int32_t batch, int32_t grid) {
  if (batch <= 0 || grid <= 1) return grid;
  const int32_t m = (batch + grid - 1) / grid;
  const int32_t n = (batch + m - 1) / m;
  return n < grid && static_cast<int64_t>(n) * 20 >= static_cast<int64_t>(grid) * 19 ? n : grid;
}

// One sequence on the line, given the exclusive prefix of the costs before it.
struct Placement {
  int64_t anchor;       // anchor of its first entry
  int32_t len;          // clamped length (keys)
  int32_t blocks;
  int32_t first_piece;  // piece of its first entry; entry s is in piece first_piece + s
  int32_t splits;       // entries (>= 1; a zero-length sequence has one, with no key)
};
MLA_SCHED_HD Placement place(const Partition& part, int64_t prefix, int32_t len, int32_t overhead) {
  Placement pl{};
  pl.len = len;
  pl.blocks = blocks_of(len);
  pl.anchor = prefix + overhead - (pl.blocks == 0 ? 1 : 0);
  const int64_t last = prefix + overhead + pl.blocks - 1;  // last anchor: next sequence's prefix - 1
  pl.first_piece = part.piece_of(pl.anchor);
  pl.splits = part.piece_of(last) - pl.first_piece + 1;
  return pl;
}

// Keys [begin, end) of entry s (0 <= s < splits) of a placed sequence; begin is a multiple of 64.
struct KeyRange {
  int32_t begin;
  int32_t end;
};
MLA_SCHED_HD KeyRange split_keys(const Partition& part, const Placement& pl, int32_t s) {
  const int32_t k = pl.first_piece + s;
  const int64_t first_block = s == 0 ? 0 : part.boundary(k) - pl.anchor;
  const int64_t end_block = s == pl.splits - 1 ? pl.blocks : part.boundary(k + 1) - pl.anchor;
  auto keys = [&](int64_t block) {
    const int64_t key = block * kKeysPerBlock;
    return static_cast<int32_t>(key < pl.len ? key : pl.len);
  };
  return {keys(first_block), keys(end_block)};
}

// Partial-result slot of entry `index` of a sequence with `splits` entries: direct write (-1)
// when the sequence is not split.
MLA_SCHED_HD int32_t slot_of(int32_t index, int32_t splits) { return splits > 1 ? index : -1; }

}  // namespace mla::cuda::hopper::sched

#undef MLA_SCHED_HD
