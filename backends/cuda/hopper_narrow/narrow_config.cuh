// The narrow Hopper kernel (sm_90a) for 8-bit KV caches (fp8_e4m3, int8, fp8_ds_mla) and at most
// 32 query rows per sequence (s_q x h_q <= 32: decode with h_q 16 or 32, or s_q 2 with h_q 16).
//
// Why a second kernel: the main Hopper kernel puts query rows on the wgmma M dimension, which is
// at least 64, so h_q 16 pays h_q 64's tensor work (docs/perf/h200.md, v8.5 probes). Here the
// keys are on M and the query rows on N = 16 or 32:
//   S^T [64 keys x N rows] = K [64 x 576] Q^T,   O^T [512 x N] += V^T [512 x 64] P^T,
// a quarter (half at N = 32) of the tensor work. Both products take A from registers: each thread reads its
// fragments' 8-bit bytes from the page (brought in by one bulk copy, as it lies in memory) and
// dequantizes them to fp16 on the way to the tensor cores, so nothing is written back to shared
// memory and a page's 36 KiB (41 KiB for fp8_ds_mla; not 72) is all a stage holds.
//
// fp8_ds_mla (656-byte tokens: fp8 latent in four 128-channel groups, each with the token's fp32
// scale, then a bf16 rope): a group's scale varies by key, which is wgmma's M row, so it cannot
// be folded into Q^T or P^T; each fp16 pair is multiplied by its keys' scales (one HMUL2). The
// rope box is the token's bf16 as is (4 k-steps instead of the 8-bit formats' 8, half of them
// zeros there), multiplied by a bf16 Q^T box (fp16 when the query is fp16, the rope converted).
//
// Two shapes (NarrowShape<W, N>, W warpgroups per CTA):
// - W = 1, N = 16 (s_q x h_q <= 16): one warpgroup per CTA walks the CTA's splits page by page
//   with an online softmax over the keys (column-wise in S^T: a max across the warpgroup per
//   page); its thread 0 also issues the page copies into a 2-stage ring, a page ahead. Two CTAs
//   per SM (about 96 KiB of shared memory each, 106 for fp8_ds_mla).
// - W = 2, N = 32 (s_q x h_q <= 32): two warpgroups walk the pages two at a time. Warpgroup h
//   computes S^T of page 2 i + h (N = 32 needs 16 accumulator registers); the column maxima are
//   exchanged across both, each writes its page's half of P^T, and each then takes O^T for half
//   the value dims (256, four m-tiles: 64 accumulator registers at N = 32, as W = 1 holds at
//   N = 16) over both pages. Every byte of a page is dequantized once per CTA, as at W = 1, for
//   twice the query rows. A 4-stage ring (two pages ahead), one CTA per SM (about 194 KiB, 214
//   for fp8_ds_mla).
// No producer warp: a 5-warp CTA is allocated registers as 6 warps, so two of them at the ~200
// registers the math needs did not fit, and one CTA per SM ran the math of a single warpgroup
// (measured: 252 us at b 128, h_q 16, 8k, where the math alone took 244).
//
// Orders chosen so every fragment is a whole 8- or 16-byte load and S^T's loads are free of bank
// conflicts (narrow_layout.hpp; V's have 2-way conflicts with 576-byte tokens, none with 656):
// - S^T: thread (warp w of its warpgroup, g = lane / 4, c = lane % 4) holds keys st_key(w, g) and
//   that + 8, and reads chunks c and c + 4 of each 128-dim group of the key's row; k-step kk of
//   group G takes bytes 2 kk, 2 kk + 1 of those chunks, so Q^T's K order is permuted to match
//   (build_qt).
// - O^T: the thread's 16 / W output dims are d0 = 512 h / W + 128 w / W + 16 g / W + [0, 16 / W);
//   m-tile t, row g holds dim d0 + 4 (t / 2) + 2 (t % 2), row g + 8 the next one. They lie in one
//   128-channel group (fp8_ds_mla: one scale per key).
#pragma once

#include "../portable/portable_launch.hpp"
#include "narrow_layout.hpp"

namespace mla::cuda::hopper_narrow {

using portable::kDqk;
using portable::kDv;
using portable::KvRead;

inline constexpr int kQBoxes = kInBoxes * 2;               // Q^T: 10 boxes of 64 fp16 (4 k-steps) per row
inline constexpr int kSmemAlign = 1024;                    // 128B-swizzle atoms

// W warpgroups per CTA, N query rows per CTA (= wgmma N). (W, N) = (1, 32) would need 128
// accumulator registers for O^T per thread; (2, 16) for h_q 16 measured slower than two CTAs of
// (1, 16) (docs/perf/h200.md, v10).
template <int W, int N>
struct NarrowShape {
  static_assert((W == 1 && N == 16) || (W == 2 && N == 32), "shapes: (1, 16), (2, 32)");
  static constexpr int kWarpgroups = W;
  static constexpr int kCols = N;
  static constexpr int kThreads = 128 * W;                  // thread 0 also issues the page copies
  static constexpr int kWarps = kThreads / 32;
  static constexpr int kStages = 2 * W;                     // pages in the ring
  static constexpr int kCtasPerSm = W == 1 ? 2 : 1;
  static constexpr int kMTiles = kDv / 64 / W;              // m-tiles of O^T per warpgroup
  static constexpr int kDimsPerThread = 16 / W;             // O^T dims per thread (bytes per key)
  static constexpr int kQBoxBytes = kCols * 128;
  static constexpr int kQBytes = kQBoxes * kQBoxBytes;      // 20 or 40 KiB
  static constexpr int kPBoxBytes = kCols * 128;            // P^T of one page: N rows x 64 keys, fp16
  static constexpr int kPBytes = W * kPBoxBytes;
  // Floats exchanged in the CTA: each warp's column maxima of a step (W pages), then its column sums;
  // the columns' softmax scales (log2 domain, the query row's power of two undone).
  static constexpr int kXchFloats = kWarps * kCols + kCols;
};

// A shape reading the cache format R: the token's layout and the shared memory it implies.
template <class Shape, KvRead R>
struct NarrowKernel : Shape {
  static_assert(R == KvRead::fp8_per_tensor || R == KvRead::int8_per_channel || R == KvRead::fp8_ds_mla,
                "8-bit caches only");
  static constexpr KvRead kRead = R;
  // fp8_ds_mla: four fp32 group scales after the latent bytes, then the bf16 rope.
  static constexpr bool kGroupScales = R == KvRead::fp8_ds_mla;
  static constexpr int kTokenBytes = kGroupScales ? portable::kDsTokenBytes : kDqk;
  static constexpr int kStageBytes = kBlockN * kTokenBytes;  // one page: 36 or 41 KiB
  static constexpr int kScaleOffset = portable::kDsScaleOffset;  // fp8_ds_mla only
  static constexpr int kRopeOffset = portable::kDsRopeOffset;    // fp8_ds_mla only
  static constexpr int kRope16KSteps = 4;  // fp8_ds_mla: its 64 bf16 rope dims, 16 per k-step
  static constexpr size_t kSmemBytes = size_t(Shape::kStages) * kStageBytes + Shape::kQBytes + Shape::kPBytes +
                                       Shape::kXchFloats * 4 + 2 * Shape::kStages * 8 /* mbarriers */ + kSmemAlign;
  static_assert(Shape::kCtasPerSm * (kSmemBytes + 1024) <= 233472,
                "the CTAs per SM must fit the 228 KiB of shared memory");
};

inline constexpr int kBarMath = 1;  // the CTA's named barrier (every thread takes part)

// A/B switches (compile-time, scripts/gpu_variants.sh), defaults the measured choice.
#ifndef MLA_NARROW_PROBE
#define MLA_NARROW_PROBE 0
#endif
// Timing probe (wrong results): 1 = the math warpgroups only wait for each page and free it;
// 2 = no bytes are loaded (thread 0 completes each stage's barrier itself).
inline constexpr int kProbe = MLA_NARROW_PROBE;

}  // namespace mla::cuda::hopper_narrow
