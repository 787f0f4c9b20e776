// Tile sizes and thread roles of the Hopper (sm_90a) decode kernel, as named constants.
//
// A CTA owns one work item at a time: (split of one sequence's keys, tile of 64 query rows),
// the rows being (query token, head) pairs of the sequence (h_kv = 1), padded with zeros.
// Keys are taken two 64-key KV blocks per round ("seesaw" schedule, FlashMLA's published
// design): KV block 2r sits in stage 0, block 2r + 1 in stage 1.
//   - math warpgroup w (warps 4w .. 4w + 3) owns output columns [256 w, 256 w + 256) (a 64 x 256
//     fp32 accumulator, 128 registers per thread) and computes S = Q K^T of the block in stage w
//     (wgmma m64n64k16, Q and K from shared memory). Warpgroup 0 publishes its new row max;
//     warpgroup 1 folds it into its own and publishes the rescale factor. Each adds P V of its
//     own block from registers (wgmma m64n256k16, A = P in registers), then P V of the other
//     warpgroup's block with that P read from shared memory. So while one warpgroup does
//     softmax the other keeps the tensor cores busy.
//   - P of a block is written over the block's rope box (box 8, dims 512..575), which only
//     that block's S needed: no extra shared memory.
//   - warps 8-11 (producer warpgroup): lane 0 of warp 8 (stage 0) and of warp 9 (stage 1) walk
//     the same splits and issue the TMA loads (boxes of 64 rows x 64 columns, 128-byte swizzle)
//     in two groups per block, each on its own mbarrier pair, so a group is refilled as soon as
//     its last reader is done: group A = the 4 V boxes of the warpgroup that computes S (free
//     after its own P V), group B = the other 4 V boxes and the rope box (free after the other
//     warpgroup's P V).
// (Hopper v4 split S by keys between the warpgroups and ran them in lock step: the tensor
// cores idled during softmax; see docs/perf/h100.md.)
#pragma once

#include "../portable/portable_launch.hpp"

namespace mla::cuda::hopper {

using portable::kDqk;
using portable::kDv;

inline constexpr int kRows = 64;                   // query rows per CTA (wgmma M)
inline constexpr int kBlockN = 64;                 // keys per KV block = page size (one TMA block)
inline constexpr int kBoxCols = 64;                // 64 bf16 = 128 bytes: one 128B-swizzle row
inline constexpr int kBoxes = kDqk / kBoxCols;     // 9 TMA boxes per KV block (and per Q tile)
inline constexpr int kBoxBytes = kBlockN * kBoxCols * 2;  // 8 KiB
inline constexpr int kTileBytes = kBoxes * kBoxBytes;     // 72 KiB: one KV block, or the Q tile
inline constexpr int kStages = 2;                  // KV blocks in shared memory: one per math warpgroup
inline constexpr int kMathWarpgroups = 2;
inline constexpr int kColsPerWarpgroup = kDv / kMathWarpgroups;       // 256 output columns
inline constexpr int kVBoxesPerWarpgroup = kColsPerWarpgroup / kBoxCols;  // 4
inline constexpr int kRopeBox = kBoxes - 1;        // box 8: S only; holds P once S is done
inline constexpr int kGroupABytes = kVBoxesPerWarpgroup * kBoxBytes;  // 32 KiB
inline constexpr int kGroupBBytes = kTileBytes - kGroupABytes;        // 40 KiB
inline constexpr int kMathThreads = 128 * kMathWarpgroups;            // 256
inline constexpr int kProducerWarp = kMathThreads / 32;               // warps 8 and 9 (lane 0 issues)
// A whole third warpgroup for the producer: ptxas budgets registers per warpgroup (a 288-thread
// CTA got 168 registers per thread and spilled the 128-register accumulator); with 384 threads
// setmaxnreg moves registers from the producer warpgroup to the math warpgroups.
inline constexpr int kThreads = kMathThreads + 128;                   // 384
inline constexpr int kQChunksPerThread = kRows * (kDqk / 8) / kMathThreads;  // 16-byte Q chunks: 18
static_assert(kRows * (kDqk / 8) % kMathThreads == 0, "the Q tile splits evenly over the math threads");
inline constexpr int kMathRegs = 232;              // 2 x 128 x 232 + 128 x 40 <= 65536
inline constexpr int kProducerRegs = 40;
inline constexpr int kSmemAlign = 1024;            // 128B-swizzle atoms are 1024-byte aligned
// Row values exchanged between the warpgroups each round (by round parity): warpgroup 0's new
// row max, warpgroup 1's new row max and its rescale factor; then the row sums at the end.
inline constexpr int kExchangeBytes = 3 * 2 * kRows * 4 + kMathWarpgroups * kRows * 4;
inline constexpr int kBarrierBytes = 8 * 8;        // full and empty, per stage and group
// 3 x 72 KiB + 2 KiB + 64 B + 1 KiB alignment slack = 224320 <= 232448 (227 KiB opt-in).
inline constexpr size_t kSmemBytes = size_t(kTileBytes) * (1 + kStages) + kExchangeBytes + kBarrierBytes + kSmemAlign;

// Scheduler cost of a split beyond its KV blocks (Q load, epilogue, partial + combine), in
// KV-block units; FlashMLA publishes the same model with 5.
inline constexpr int kBlockOverhead = 5;
// The contiguous scheduler's one CTA holds at most 8 sequences per thread (1024 threads): the
// plan uses this kernel only up to this many sequences.
inline constexpr int kMaxBatch = 8192;

// Named barriers (0 is __syncthreads). kBarMath: both math warpgroups (item boundaries);
// the seesaw hand-offs, each arrived at by one warpgroup and waited on by the other;
// kBarWarpgroup0 + w: warpgroup w alone.
inline constexpr int kBarMath = 1;
inline constexpr int kBarMax0 = 2;    // warpgroup 0's row max is published
inline constexpr int kBarScale1 = 3;  // warpgroup 1's row max and rescale factor are published
inline constexpr int kBarP0 = 4;      // P of the stage-0 block (rescaled) is in shared memory
inline constexpr int kBarP1 = 5;      // P of the stage-1 block is in shared memory
inline constexpr int kBarWarpgroup0 = 6;  // and 7

// Memory-system switches, compile-time so that A/B builds (scripts/gpu_variants.sh) can measure
// each; the defaults are the measured winners (docs/perf/h200.md, which also lists the schedule
// variants that lost and were removed: L2 prefetch of later blocks, S1 queued behind S0, stage 0
// released first, one "full" barrier per box, FlashMLA's P V order, the next S0 issued behind
// P1 V1_L).
#ifndef MLA_HOPPER_EVICT_FIRST_UNITS
#define MLA_HOPPER_EVICT_FIRST_UNITS 2
#endif
// KV loads carry an L2 evict-first hint when at most this many row tiles read each block.
inline constexpr int kEvictFirstUnits = MLA_HOPPER_EVICT_FIRST_UNITS;
#ifndef MLA_HOPPER_L2_PROMOTION
#define MLA_HOPPER_L2_PROMOTION 128
#endif
// L2 promotion of the KV tensor map's loads, in bytes (0, 128 or 256). A box row is 128 bytes
// of a 1152-byte token row: 256-byte promotion fetched half of the next box early (H200:
// 256 -> 128 made the b 128 h_q 16 8k decode 4.5% faster).
inline constexpr int kL2Promotion = MLA_HOPPER_L2_PROMOTION;

static_assert(kDqk % kBoxCols == 0 && kDv % (kBoxCols * kMathWarpgroups) == 0, "box tiling");
static_assert(kBlockN == 64 && kRows == 64, "the wgmma shapes below assume 64 x 64 tiles");

}  // namespace mla::cuda::hopper
