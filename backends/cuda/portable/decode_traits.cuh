// Tile sizes and thread roles of the portable decode kernel, as named constants.
//
// A CTA owns one work item: (split of one sequence's keys, KV head, tile of query rows).
// Query rows are (query token, head of the KV group) pairs, so all heads sharing a latent KV
// row are computed from one pass over it. Warps form a ROW_WARPS x COL_WARPS grid:
//   - S = Q K^T: warp (r, c) computes rows [16r, 16r+16) against keys [c*NW, c*NW+NW) of
//     the tile; the row max is exchanged through shared memory (red_max).
//   - O += P V: warp (r, c) owns output columns [c*DW, c*DW+DW) of its 16 rows, reading the
//     whole P tile (shared memory) and V = the first kDv columns of the same K tile.
// Splitting output columns across warps keeps the fp32 accumulator at 64 or 128 registers
// per thread, which is why a 16-row group needs 2 or 4 warps.
#pragma once

#include "portable_launch.hpp"

namespace mla::cuda::portable {

inline constexpr int kBlockN = 32;                // keys per pipeline stage
inline constexpr int kPad = 8;                    // elements of row padding in shared memory:
inline constexpr int kRowStride = kDqk + kPad;    // 1168-byte rows are 16 mod 128 bytes, so the
inline constexpr int kPStride = kBlockN + kPad;   // 8 rows of an ldmatrix hit distinct banks
inline constexpr int kChunks = kDqk / 8;          // 16-byte chunks per 576-element row
// 8-bit caches land first in a byte staging area of the stage (cp.async), then are dequantized
// into the 16-bit tile: room for the widest token, fp8_ds_mla's 656 bytes (41 chunks of 16).
inline constexpr int kRawTokenBytes = kDv + 4 * (kDv / 128) + 2 * (kDqk - kDv);

template <int ROW_WARPS, int COL_WARPS>
struct DecodeTraits {
  static constexpr int kRowWarps = ROW_WARPS;
  static constexpr int kColWarps = COL_WARPS;
  static constexpr int kM = 16 * ROW_WARPS;              // query rows per CTA
  static constexpr int kThreads = 32 * ROW_WARPS * COL_WARPS;
  static constexpr int kNW = kBlockN / COL_WARPS;        // keys per warp in S
  static constexpr int kSTiles = kNW / 8;                // n8 tiles of S per warp
  static constexpr int kDW = kDv / COL_WARPS;            // output columns per warp
  static constexpr int kOTiles = kDW / 8;                // n8 tiles of O per warp
  static constexpr int kThreadsPerKey = kThreads / kBlockN;
  static_assert(kSTiles == 1 || kSTiles == 2, "S tiles per warp");
  static_assert(kOTiles % 2 == 0, "O tiles are loaded in pairs");
  static_assert(kThreads % kBlockN == 0, "key loads: whole threads per key");

  // Shared memory, in bytes, in this order: Q, KV stages, P, red_max, red_sum.
  static constexpr size_t kQBytes = size_t(kM) * kRowStride * 2;
  static constexpr size_t kStageBytes = size_t(kBlockN) * kRowStride * 2;
  static constexpr size_t kPBytes = size_t(kM) * kPStride * 2;
  static constexpr size_t kRedBytes = size_t(COL_WARPS) * kM * 4;
  static constexpr size_t kRawStageBytes = size_t(kBlockN) * kRawTokenBytes;
  // Shared memory, in bytes; 8-bit caches add a byte staging area per stage after red_sum.
  static constexpr size_t smem_bytes(int stages, bool staged = false) {
    return kQBytes + stages * kStageBytes + kPBytes + 2 * kRedBytes + (staged ? stages * kRawStageBytes : 0);
  }
};

using TraitsM16 = DecodeTraits<1, 4>;
using TraitsM32 = DecodeTraits<2, 4>;
using TraitsM64 = DecodeTraits<4, 2>;

}  // namespace mla::cuda::portable
