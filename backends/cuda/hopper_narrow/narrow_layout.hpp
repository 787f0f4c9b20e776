// The narrow kernel's index arithmetic (hopper_narrow/): where a thread's wgmma fragments come
// from in a page, where Q^T's elements go, and the S^T / P^T key orders, for 576- and 656-byte
// tokens. Plain C++ (no CUDA header), __host__ __device__ under nvcc, so
// tests/cuda/test_narrow_layout.cpp checks the very same functions on a host without a GPU: the
// fragments against Q^T's layout, and the bank groups of every load phase.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define MLA_NARROW_HD __host__ __device__ __forceinline__
#else
#define MLA_NARROW_HD inline
#endif

namespace mla::cuda::hopper_narrow {

inline constexpr int kBlockN = 64;                         // keys per KV page = wgmma M of S^T
inline constexpr int kInBoxCols = 128;                     // dims per "box": the 128-dim groups S^T walks
inline constexpr int kInBoxes = 5;                         // 4 latent boxes + the rope box (dims 512..639;
                                                           // past 575 zeros, never read)
inline constexpr int kKStepsPerBox = kInBoxCols / 16;      // 8 k-steps of S^T per box

// Byte offset of 16-byte chunk `chunk` (0..7) of row `row` in a 128B-swizzled box.
MLA_NARROW_HD uint32_t swz(int row, int chunk) { return row * 128 + ((chunk ^ (row & 7)) << 4); }

// Byte offset of 16-byte chunk `chunk` of the 128 dims [128 G, 128 G + 128) of token row `key` in
// a stage: the page as it is in memory, `kTokenBytes` per token (for the 8-bit rope, dims 576-639
// do not exist; the rope box's chunks 4-7 are never read).
template <int kTokenBytes>
MLA_NARROW_HD uint32_t page_chunk(int key, int G, int chunk) {
  return key * kTokenBytes + G * 128 + chunk * 16;
}

// The keys of S^T's rows g and g + 8 in warp w's 16 (A row r of the wgmma is key st_key(w, r)):
// lanes g and g + 1 of a load phase read chunks c = 0..3 of two keys, which must hit 8 different
// bank groups. A 576-byte row is 36 = 4 mod 8 chunks, so keys g and g + 1 do; a 656-byte row is
// 41 = 1 mod 8, so the keys of g and g + 1 are 4 apart (0, 4, 1, 5, 2, 6, 3, 7).
template <int kTokenBytes>
MLA_NARROW_HD int st_key(int w, int g) {
  if constexpr (kTokenBytes % 128 == 64) return 16 * w + g;
  else return 16 * w + (((g & 1) << 2) | (g >> 1));
}

// O^T += V^T P^T takes, at K-index j of a k-step, key pv_key(j) of its 16. With 576-byte rows the
// pairs (2c, 2c + 1) are swapped for odd c, so the lanes c = 0..3 of a load phase read keys of
// both parities (bank groups 0 and 4 of a row start) instead of four even ones; 2-way conflicts
// remain (the thread's 16 / W dims depend on its row g only). With 656-byte rows (1 mod 8 chunks)
// keys 2c and the dims of g, g + 1 already meet 8 bank groups: no permutation, no conflict. Its
// own inverse.
template <int kTokenBytes>
MLA_NARROW_HD int pv_key(int j) {
  if constexpr (kTokenBytes % 128 == 64) return j ^ ((j >> 1) & 1);
  else return j;
}

// Q^T's position of dim d (0..639) in row n: S^T's k-step kk of box G takes, in its slots
// 2 c + e and 8 + 2 c + e, the bytes 2 kk + e of chunks c and c + 4 of the key's box row, i.e.
// dims 128 G + 16 c + 2 kk + e and 128 G + 64 + 16 c + 2 kk + e. Returns the byte offset in Q^T
// (10 boxes of N rows x 64 fp16, 128B-swizzled, `box_bytes` = N x 128 apart); d even (pairs stay
// together).
MLA_NARROW_HD uint32_t qt_offset(int n, int d, int box_bytes) {
  const int G = d / 128, r = d % 128, hi = r / 64, c = (r % 64) / 16, t = r % 16, kk = t / 2, e = t % 2;
  const int slot = 8 * hi + 2 * c + e;
  const int col = (kk % 4) * 16 + slot;  // element within the Q^T box row
  return (2 * G + kk / 4) * box_bytes + swz(n, col / 8) + (col % 8) * 2;
}

// fp8_ds_mla's rope box (Q^T box 8, 4 k-steps): k-step kk takes, in slots 2 c + e and 8 + 2 c + e,
// rope values 8 c + 2 kk + e and 32 + 8 c + 2 kk + e (words kk of the key's bf16 chunks c and
// c + 4: with S^T's keys 4 apart in a load phase, chunks c = 0..3 of a 656-byte row meet 8
// different bank groups). Byte offset of rope value r (0..63, even) of row n in Q^T.
MLA_NARROW_HD uint32_t qt_rope16_offset(int n, int r, int box_bytes) {
  const int hi = r / 32, c = (r % 32) / 8, kk = (r % 8) / 2, e = r % 2;
  const int col = kk * 16 + 8 * hi + 2 * c + e;
  return 2 * (kInBoxes - 1) * box_bytes + swz(n, col / 8) + (col % 8) * 2;
}

}  // namespace mla::cuda::hopper_narrow
