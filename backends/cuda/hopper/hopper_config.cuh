// Tile sizes and thread roles of the Hopper (sm_90a) decode kernel, as named constants.
//
// A CTA owns one work item at a time: (split of one sequence's keys, tile of 64 query rows),
// the rows being (query token, head) pairs of the sequence (h_kv = 1), padded with zeros.
//   - warps 0-3 (math warpgroup 0) and 4-7 (math warpgroup 1): warpgroup wg computes
//     S for keys [32 wg, 32 wg + 32) of the block (wgmma m64n32k16, Q and K from shared
//     memory), the two exchange row maxima through shared memory (barrier A), each writes its
//     half of P (bf16) into a shared 64 x 64 P tile (barrier B), then
//     O[:, 256 wg .. 256 wg + 255] += P V with P and V from shared memory, V = columns
//     [256 wg, 256 wg + 256) of the same K tile read N-major (wgmma m64n256k16; the 64 x 256
//     fp32 accumulator is 128 registers per thread). Row sums are exchanged at the end.
//   - warps 8-11 (producer warpgroup): lane 0 of warp 8 walks the same splits and issues the
//     TMA loads of each 64-key KV block (9 boxes of 64 rows x 64 columns, 128-byte swizzle) into a 2-stage
//     ring guarded by mbarriers (full: TMA bytes landed; empty: all 256 math threads done).
// (Hopper v1 computed all of S in both warpgroups, P from registers, no exchange: simpler, but
// 1.5x the tensor work per block; see docs/perf/h100.md.)
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
inline constexpr int kStages = 2;                  // KV ring depth: 2 x 72 KiB + Q = 216 KiB
inline constexpr int kMathWarpgroups = 2;
inline constexpr int kColsPerWarpgroup = kDv / kMathWarpgroups;       // 256 output columns
inline constexpr int kVBoxesPerWarpgroup = kColsPerWarpgroup / kBoxCols;  // 4
inline constexpr int kMathThreads = 128 * kMathWarpgroups;            // 256
inline constexpr int kProducerWarp = kMathThreads / 32;               // warp 8 (lane 0 issues)
// A whole third warpgroup for the producer: ptxas budgets registers per warpgroup (a 288-thread
// CTA got 168 registers per thread and spilled the 128-register accumulator); with 384 threads
// setmaxnreg moves registers from the producer warpgroup to the math warpgroups.
inline constexpr int kThreads = kMathThreads + 128;                   // 384
inline constexpr int kMathRegs = 232;              // 2 x 128 x 232 + 128 x 40 <= 65536
inline constexpr int kProducerRegs = 40;
inline constexpr int kSmemAlign = 1024;            // 128B-swizzle atoms are 1024-byte aligned
inline constexpr int kKeysPerWarpgroup = kBlockN / kMathWarpgroups;  // 32: each computes half of S
inline constexpr int kPBytes = kRows * kBlockN * 2;  // P tile (bf16), one 128B-swizzled box
inline constexpr int kRedBytes = 2 * kMathWarpgroups * kRows * 4;  // row max and row sum exchange
inline constexpr int kBarrierBytes = 64;           // full[kStages], empty[kStages]
// 3 x 72 KiB + 8 KiB + 1 KiB + 64 B + 1 KiB alignment slack = 231488 <= 232448 (227 KiB opt-in).
inline constexpr size_t kSmemBytes =
    size_t(kTileBytes) * (1 + kStages) + kPBytes + kRedBytes + kBarrierBytes + kSmemAlign;

// Scheduler cost of a split beyond its KV blocks (Q load, epilogue, partial + combine), in
// KV-block units; FlashMLA publishes the same model with 5.
inline constexpr int kBlockOverhead = 5;
// The contiguous scheduler is one serial walk over the batch: the plan uses this kernel only
// up to this many sequences.
inline constexpr int kMaxBatch = 8192;

// Named barriers (0 is __syncthreads): both math warpgroups; one per math warpgroup.
inline constexpr int kBarMath = 1;
inline constexpr int kBarWarpgroup0 = 2;

static_assert(kDqk % kBoxCols == 0 && kDv % (kBoxCols * kMathWarpgroups) == 0, "box tiling");
static_assert(kBlockN == 64 && kRows == 64, "the wgmma shapes below assume 64 x 64 tiles");

}  // namespace mla::cuda::hopper
