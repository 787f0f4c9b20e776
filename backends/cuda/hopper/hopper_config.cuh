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
// setmaxnreg only moves registers within the CTA's allocation (kLaunchRegs per thread, what
// ptxas compiles the kernel to at 384 threads): what the math warpgroups gain, the producer
// warpgroup must give up, or setmaxnreg.inc waits forever.
inline constexpr int kLaunchRegs = 65536 / kThreads / 8 * 8;  // 168
// The split per cache kind: a 16-bit cache's producers only issue TMA loads (40 is plenty); an
// 8-bit cache's converter warps dequantize (two boxes of chunks in flight) and are what limits
// that kernel, while its math warpgroups are not (docs/perf/h200.md), so they give up 16 to them
// (measured, producer 56 / 64 / 72: the same for fp8_e4m3, int8 5% and fp8_ds_mla 19% faster at 72).
#ifndef MLA_HOPPER_KV8_PRODUCER_REGS
#define MLA_HOPPER_KV8_PRODUCER_REGS 72
#endif
template <bool kEightBit>
struct RegisterSplit {
  static constexpr int kProducer = kEightBit ? MLA_HOPPER_KV8_PRODUCER_REGS : 40;
  static constexpr int kMath = kLaunchRegs + (kLaunchRegs - kProducer) / 2 / 8 * 8;  // 232 or 216
  static_assert((kMath - kLaunchRegs) * kMathThreads <= (kLaunchRegs - kProducer) * 128,
                "setmaxnreg: the math warpgroups would take more registers than the producers release");
};
inline constexpr int kSmemAlign = 1024;            // 128B-swizzle atoms are 1024-byte aligned
// Row values exchanged between the warpgroups each round (by round parity): warpgroup 0's new
// row max, warpgroup 1's new row max and its rescale factor; then the row sums at the end.
inline constexpr int kExchangeBytes = 3 * 2 * kRows * 4 + kMathWarpgroups * kRows * 4;
// 8-bit KV formats (kv8_producer.cuh): the producer warpgroup's lane 0 of its last warp issues
// the TMA loads of the 8-bit bytes, its other three warps dequantize them into the 16-bit tile.
// The bytes of a group land inside the group's own tile region (each 64-column 8-bit box is half
// the size of the 16-bit box it becomes), so they need no shared memory of their own; only
// fp8_ds_mla's in-token scales get a small area per stage and group.
inline constexpr int kConvertWarps = 3;
inline constexpr int kConvertThreads = 32 * kConvertWarps;            // 96
inline constexpr int kLoaderWarp = kProducerWarp + kConvertWarps;     // warp 11
inline constexpr int kInBoxCols = 64;                                  // 8-bit values (bytes) per box row
inline constexpr int kInBoxBytes = kBlockN * kInBoxCols;               // 4 KiB
inline constexpr int kNopeBoxesPerGroup = kVBoxesPerWarpgroup;         // 4: a group's latent boxes
using portable::kDsRopeOffset;   // fp8_ds_mla's token layout (portable_launch.hpp)
using portable::kDsScaleOffset;
using portable::kDsTokenBytes;
inline constexpr int kDsScaleBytes = kBlockN * 16;                     // one group's scales: 1 KiB
// The scale area: fp8_ds_mla's scales per stage and group (4 KiB; int8 keeps its 512 output
// channel scales in the first 2 KiB), then the query rows' maxima of QueryToFp16 (two sets of 64).
inline constexpr int kRowMaxOffset = kStages * 2 * kDsScaleBytes;     // 4 KiB
inline constexpr int kScaleAreaBytes = kRowMaxOffset + 2 * kRows * 4;  // 4.5 KiB
inline constexpr int kBarrierBytes = 12 * 8;       // full, empty and staged, per stage and group
// 3 x 72 KiB + 2 KiB + 4.5 KiB + 96 B + 1 KiB alignment slack = 228960 <= 232448 (227 KiB opt-in).
inline constexpr size_t kSmemBytes =
    size_t(kTileBytes) * (1 + kStages) + kExchangeBytes + kScaleAreaBytes + kBarrierBytes + kSmemAlign;
static_assert(kSmemBytes <= 232448, "the Hopper kernel's shared memory exceeds the 227 KiB opt-in limit");

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
inline constexpr int kBarConvert = 8;     // the converter warps of an 8-bit KV format

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
#ifndef MLA_HOPPER_KV8_PREFETCH
#define MLA_HOPPER_KV8_PREFETCH 2
#endif
// 8-bit formats: the loader prefetches into L2 the page this many KV blocks ahead in the split
// (0: none). A group's bytes can only be loaded once the group's 16-bit region is free (they land
// inside it), so that load is on every round's critical path; from L2 it is shorter.
inline constexpr int kKv8PrefetchBlocks = MLA_HOPPER_KV8_PREFETCH;
#ifndef MLA_HOPPER_KV8_PROBE
#define MLA_HOPPER_KV8_PROBE 0
#endif
// Timing probe for the 8-bit formats (A/B builds only; the results are wrong): 1 = the converter
// warps skip the dequantization (the 8-bit bytes still land), so the time without it shows;
// 2 = no bytes are loaded (the converters convert what is there); 3 = neither.
inline constexpr int kKv8Probe = MLA_HOPPER_KV8_PROBE;

static_assert(kDqk % kBoxCols == 0 && kDv % (kBoxCols * kMathWarpgroups) == 0, "box tiling");
static_assert(kBlockN == 64 && kRows == 64, "the wgmma shapes below assume 64 x 64 tiles");

}  // namespace mla::cuda::hopper
