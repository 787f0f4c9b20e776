// The narrow Hopper kernel (sm_90a) for 8-bit KV caches (fp8_e4m3, int8) and at most 16 query
// rows per sequence (s_q x h_q <= 16: decode with h_q 16, or h_q 8 with s_q 2).
//
// Why a second kernel: the main Hopper kernel puts query rows on the wgmma M dimension, which is
// at least 64, so h_q 16 pays h_q 64's tensor work (docs/perf/h200.md, v8.5 probes). Here the
// keys are on M and the query rows on N = 16:
//   S^T [64 keys x 16 rows] = K [64 x 576] Q^T,   O^T [512 x 16] += V^T [512 x 64] P^T,
// a quarter of the tensor work. Both products take A from registers: each thread reads its
// fragments' 8-bit bytes from the page (brought in by one bulk copy, as it lies in memory) and
// dequantizes them to fp16 on the way to the tensor cores, so nothing is written back to shared
// memory and a page's 36 KiB (not 72) is all a stage holds.
//
// Roles: one warpgroup per CTA walks the CTA's splits block by block with an online softmax over
// the keys (column-wise in S^T: a max across the warpgroup per block); its thread 0 also issues
// the page copies into a 2-stage ring, a page ahead. Two CTAs per SM (about 96 KiB of shared
// memory each). No producer warp: a 5-warp CTA is allocated registers as 6 warps, so two of
// them at the ~200 registers the math needs did not fit, and one CTA per SM ran the math of a
// single warpgroup (measured: 252 us at b 128, h_q 16, 8k, where the math alone took 244).
//
// Orders chosen so every fragment is a whole 16-byte load and S^T's loads are free of bank
// conflicts (narrow_fragments.cuh; V's have 2-way conflicts):
// - S^T: thread (warp w, g = lane / 4, c = lane % 4) holds keys 16 w + g and that + 8, and reads
//   chunks c and c + 4 of each 128-dim group of the key's row; k-step kk of group G takes bytes
//   2 kk, 2 kk + 1 of those chunks, so Q^T's K order is permuted to match (build_qt).
// - O^T: the thread's 16 output dims are 128 w + 16 g + [0, 16) (one chunk of box w); m-tile t,
//   row g holds dim 128 w + 16 g + 4 (t / 2) + 2 (t % 2), row g + 8 the next one.
#pragma once

#include "../portable/portable_launch.hpp"

namespace mla::cuda::hopper_narrow {

using portable::kDqk;
using portable::kDv;

inline constexpr int kCols = 16;                           // query rows per CTA = wgmma N
inline constexpr int kBlockN = 64;                         // keys per KV block (page) = wgmma M of S^T
inline constexpr int kInBoxCols = 128;                     // dims per "box": the 128-dim groups S^T walks
inline constexpr int kInBoxes = 5;                         // 4 latent boxes + the rope box (dims 512..639;
                                                           // past 575 zeros, never read)
inline constexpr int kStageBytes = kBlockN * kDqk;         // 36 KiB: one page of 576-byte tokens
inline constexpr int kStages = 2;
inline constexpr int kKStepsPerBox = kInBoxCols / 16;      // 8 k-steps of S^T per box
inline constexpr int kQBoxes = kInBoxes * 2;               // Q^T: 10 boxes of 64 fp16 (4 k-steps) per row
inline constexpr int kQBoxBytes = kCols * 128;             // 2 KiB
inline constexpr int kQBytes = kQBoxes * kQBoxBytes;       // 20 KiB
inline constexpr int kPBytes = kCols * 128;                // P^T: 16 rows x 64 keys, fp16
inline constexpr int kMTiles = kDv / 64;                   // 8 m-tiles of O^T
inline constexpr int kMathThreads = 128;
inline constexpr int kThreads = kMathThreads;              // thread 0 also issues the page copies
inline constexpr int kCtasPerSm = 2;
inline constexpr int kSmemAlign = 1024;                    // 128B-swizzle atoms
// Floats exchanged in the warpgroup: each warp's column maxima of a block, then its column sums;
// the columns' softmax scales (log2 domain, the query row's power of two undone).
inline constexpr int kXchFloats = 4 * kCols + kCols;
inline constexpr size_t kSmemBytes =
    size_t(kStages) * kStageBytes + kQBytes + kPBytes + kXchFloats * 4 + 4 * 8 /* mbarriers */ + kSmemAlign;
static_assert(kCtasPerSm * (kSmemBytes + 1024) <= 233472, "two CTAs per SM must fit the 228 KiB of shared memory");

inline constexpr int kBarMath = 1;  // the math warpgroup's named barrier

// A/B switches (compile-time, scripts/gpu_variants.sh), defaults the measured choice.
#ifndef MLA_NARROW_PROBE
#define MLA_NARROW_PROBE 0
#endif
// Timing probe (wrong results): 1 = the math warpgroup only waits for each page and frees it;
// 2 = no bytes are loaded (thread 0 completes each stage's barrier itself).
inline constexpr int kProbe = MLA_NARROW_PROBE;

}  // namespace mla::cuda::hopper_narrow
