// The producer warpgroup of the Hopper kernel for the 8-bit KV formats (fp8_e4m3, int8,
// fp8_ds_mla): it turns each 64-token page of 8-bit bytes into the same 16-bit, 128B-swizzled
// tile the math warpgroups read for bf16 caches, so the math is the same code for every format.
//
// - The loader (lane 0 of warp kLoaderWarp) issues the TMA loads of a group's 8-bit bytes as
//   soon as the group's 16-bit region is free (its "empty" mbarrier): the 4 latent boxes of the
//   group (64 tokens x 64 bytes each, 4 KiB) land in the upper half of the group's own 32 KiB
//   of latent boxes, group B's 8-bit rope box in the upper half of the rope box; fp8_ds_mla's
//   bf16 rope goes straight into the rope box (128B-swizzled, where group B's converters turn
//   it into fp16 in place) and its scales into a 1 KiB area per stage and group. Completion is counted on the "staged" mbarrier.
// - The converters (warps kProducerWarp .. kLoaderWarp - 1, 96 threads) wait for "staged",
//   dequantize two boxes at a time into the 16-bit boxes, and arrive on "full". 16-bit box i
//   covers bytes [8 KiB i, 8 KiB i + 8 KiB) of the group region and 8-bit box i sits at
//   16 KiB + 4 KiB i, so boxes 0 and 1 are written without waiting, and boxes 2 and 3 (and the
//   rope box) once every converter has read the 8-bit bytes they overwrite (convert_group).
// Both walk the items and rounds in the math warpgroups' order: per round, group A of the two
// blocks, then group B of the two (the order the math frees them in).
#pragma once

#include <cuda.h>

#include "../portable/kv_dequant.cuh"
#include "../portable/portable_launch.hpp"
#include "hopper_config.cuh"
#include "hopper_ptx.cuh"
#include "hopper_smem.cuh"
#include "query_to_fp16.cuh"

namespace mla::cuda::hopper {

// The TMA descriptors of the KV cache. 16-bit caches use `kv` only (64 x 64-element boxes,
// 128B swizzle). 8-bit caches: `kv` has 64-byte x 64-token boxes of the latent (and of the
// fp8_e4m3 / int8 rope), unswizzled; fp8_ds_mla adds `rope` (128-byte x 64-token boxes of its
// bf16 rope, 128B-swizzled) and `scales` (16-byte x 64-token boxes of its 4 fp32 scales).
struct KvMaps {
  CUtensorMap kv;
  CUtensorMap rope;
  CUtensorMap scales;
};

template <typename T, portable::KvRead R>
struct Kv8Producer {
  static constexpr bool kDs = R == portable::KvRead::fp8_ds_mla;
  static constexpr bool kInt8 = R == portable::KvRead::int8_per_channel;

  // Bytes the TMA loads of group g bring (the "staged" transaction count).
  static constexpr uint32_t staged_bytes(int g) {
    return kNopeBoxesPerGroup * kInBoxBytes + (kDs ? kDsScaleBytes : 0) +
           (g == 1 ? (kDs ? kBoxBytes : kInBoxBytes) : 0);
  }
  // First 16-bit latent box of (stage, group): group A of stage s is warpgroup s's V boxes.
  __device__ static int nope_box0(int stage, int g) { return kNopeBoxesPerGroup * (stage ^ g); }
  __device__ static uint32_t in_box_offset(int stage, int g, int i) {
    return stage * kTileBytes + nope_box0(stage, g) * kBoxBytes + 2 * kBoxBytes + i * kInBoxBytes;
  }
  // fp8_e4m3 / int8 rope bytes: the upper half of the rope box.
  __device__ static uint32_t rope_in_offset(int stage) { return stage * kTileBytes + kRopeBox * kBoxBytes + kInBoxBytes; }

  // Loader: the TMA loads of group g of the page `page` into `stage`, once the group is free.
  __device__ static void load_group(const Smem& sm, const KvMaps& maps, int stage, int g, int page, bool evict_first,
                                    uint64_t policy) {
    const uint32_t bar = sm.staged(stage, g);
    if constexpr (kKv8Probe >= 2) {  // timing probe: no bytes are loaded
      mbar_arrive(bar);
      return;
    }
    mbar_expect_tx(bar, staged_bytes(g));
    const int nb = nope_box0(stage, g);
#pragma unroll
    for (int i = 0; i < kNopeBoxesPerGroup; ++i)
      tma_load(sm.kv + in_box_offset(stage, g, i), &maps.kv, (nb + i) * kInBoxCols, 0, page, bar, evict_first, policy);
    if (g == 1) {
      if constexpr (kDs)
        tma_load(sm.tile(stage) + kRopeBox * kBoxBytes, &maps.rope, kDsRopeOffset, 0, page, bar, evict_first, policy);
      else
        tma_load(sm.kv + rope_in_offset(stage), &maps.kv, kDv, 0, page, bar, evict_first, policy);
    }
    if constexpr (kDs) tma_load(sm.scale(stage, g), &maps.scales, kDsScaleOffset, 0, page, bar, evict_first, policy);
  }

  using M = typename KvMma<T, R>::type;  // the 16-bit tile's type

  // Eight 8-bit values as eight M. To fp16: fp8 pairs by one cvt each (fp8_ds_mla's then times
  // the group's scale, one HMUL2), int8 by the 1024 + code trick (the byte under a 0x64 exponent
  // byte, minus 1152: exact); to bf16 through float.
  __device__ static uint4 dequantize8(uint2 raw, float scale) {
    if constexpr (std::is_same_v<M, __half>) {
      uint32_t out[4];
      const uint32_t words[2] = {raw.x, raw.y};
#pragma unroll
      for (int w = 0; w < 2; ++w) {
        if constexpr (kInt8) {
          const uint32_t biased = words[w] ^ 0x80808080u;
          const __half2 k1152 = __float2half2_rn(1152.f);
          uint32_t lo = __byte_perm(biased, 0x64646464u, 0x4140), hi = __byte_perm(biased, 0x64646464u, 0x4342);
          const __half2 a = __hsub2(*reinterpret_cast<const __half2*>(&lo), k1152);
          const __half2 b = __hsub2(*reinterpret_cast<const __half2*>(&hi), k1152);
          out[2 * w] = *reinterpret_cast<const uint32_t*>(&a);
          out[2 * w + 1] = *reinterpret_cast<const uint32_t*>(&b);
        } else {
          asm volatile("{\n.reg .b16 lo, hi;\nmov.b32 {lo, hi}, %2;\ncvt.rn.f16x2.e4m3x2 %0, lo;\ncvt.rn.f16x2.e4m3x2 %1, hi;\n}\n"
              : "=r"(out[2 * w]), "=r"(out[2 * w + 1])
              : "r"(words[w]));
        }
      }
      if constexpr (kDs) {
        const __half2 s = __float2half2_rn(scale);
#pragma unroll
        for (int k = 0; k < 4; ++k) out[k] = portable::scale_f16x2(out[k], s);
      }
      return make_uint4(out[0], out[1], out[2], out[3]);
    } else {
      return portable::dequantize_chunk<M>(raw, kInt8, scale);
    }
  }
  // One chunk (16 bytes of token `token`, columns 16 part + [0, 16)) into the 16-bit box.
  __device__ static void dequantize_chunk_to(uint4 raw, float scale, unsigned char* out, int token, int part) {
    *reinterpret_cast<uint4*>(out + swz(token, 2 * part)) = dequantize8(make_uint2(raw.x, raw.y), scale);
    *reinterpret_cast<uint4*>(out + swz(token, 2 * part + 1)) = dequantize8(make_uint2(raw.z, raw.w), scale);
  }

  // Converters: one 8-bit box (64 tokens x 64 bytes, row-major) becomes one 16-bit box
  // (128B-swizzled). Chunk k = 16 bytes = 16 values of token k / 4, columns 16 (k % 4) + [0, 16):
  // 16-byte chunks 2 (k % 4) and 2 (k % 4) + 1 of the token's row. Converter ctid owns chunks
  // ctid + 96 j of every box; it reads all of them at once (up to three loads in flight).
  static constexpr int kBoxChunks = kInBoxBytes / 16;                                      // 256
  static constexpr int kChunksPerConverter = (kBoxChunks + kConvertThreads - 1) / kConvertThreads;  // 3
  struct BoxChunks {
    uint4 raw[kChunksPerConverter];
    float scale[kChunksPerConverter];
  };
  __device__ static bool owns(int ctid, int j) { return ctid + kConvertThreads * j < kBoxChunks; }
  // `scales`: fp8_ds_mla's scale area's address plus 4 x the 128-column group of the box (16
  // bytes per token); unused otherwise.
  __device__ static void read_box(const unsigned char* in, uint32_t scales, int ctid, BoxChunks& b) {
#pragma unroll
    for (int j = 0; j < kChunksPerConverter; ++j)
      if (owns(ctid, j)) {
        const int k = ctid + kConvertThreads * j;
        b.raw[j] = *reinterpret_cast<const uint4*>(in + k * 16);
        b.scale[j] = kDs ? ld_shared_f32(scales + (k / 4) * 16) : 1.f;
      }
  }
  __device__ static void write_box(const BoxChunks& b, unsigned char* out, int ctid) {
#pragma unroll
    for (int j = 0; j < kChunksPerConverter; ++j)
      if (owns(ctid, j)) {
        const int k = ctid + kConvertThreads * j;
        dequantize_chunk_to(b.raw[j], b.scale[j], out, k / 4, k % 4);
      }
  }

  // Converters: group g of `stage` (its bytes have landed) into the 16-bit tile, two boxes at a
  // time (six loads in flight per converter). 16-bit box i covers bytes [8 KiB i, 8 KiB i + 8 KiB)
  // of the group region and 8-bit box i sits at 16 KiB + 4 KiB i, so 16-bit boxes 0 and 1 overlap
  // no 8-bit byte: read and written without waiting for anyone. Boxes 2 and 3 overlap all four
  // 8-bit boxes, and the rope box its own 8-bit bytes: those are written only after every
  // converter has read them (one named barrier each).
  __device__ static void convert_group(const Smem& sm, int stage, int g, int ctid) {
    const int nb = nope_box0(stage, g);
    unsigned char* tile = sm.tile_ptr(stage);
    const uint32_t scales = sm.scale(stage, g);
    auto in_of = [&](int i) { return sm.kv_ptr + in_box_offset(stage, g, i); };
    auto out_of = [&](int i) { return tile + (nb + i) * kBoxBytes; };
    auto scales_of = [&](int i) { return scales + 4 * ((nb + i) / 2); };
    static_assert(kNopeBoxesPerGroup == 4, "the two-phase order below assumes four latent boxes per group");
    BoxChunks b0, b1;
#pragma unroll 1
    for (int i = 0; i < kNopeBoxesPerGroup; i += 2) {
      read_box(in_of(i), scales_of(i), ctid, b0);
      read_box(in_of(i + 1), scales_of(i + 1), ctid, b1);
      if (i > 0) named_sync(kBarConvert, kConvertThreads);  // 8-bit boxes 0-3 read by all
      write_box(b0, out_of(i), ctid);
      write_box(b1, out_of(i + 1), ctid);
    }
    if (g == 1 && !kDs) {  // fp8_e4m3 / int8 rope: its 8-bit bytes are the upper half of its box
      unsigned char* rope = tile + kRopeBox * kBoxBytes;
      read_box(sm.kv_ptr + rope_in_offset(stage), scales, ctid, b0);
      named_sync(kBarConvert, kConvertThreads);
      write_box(b0, rope, ctid);
    }
    if constexpr (kDs && std::is_same_v<M, __half>) {
      if (g == 1) {
        // fp8_ds_mla's rope is bf16 (landed swizzled in place): to fp16 chunk by chunk, in place.
        unsigned char* rope = tile + kRopeBox * kBoxBytes;
        for (int k = ctid; k < kBoxBytes / 16; k += kConvertThreads) {
          uint4* chunk = reinterpret_cast<uint4*>(rope + k * 16);
          const uint4 v = *chunk;
          *chunk = portable::rope_chunk<M>(make_uint2(v.x, v.y), make_uint2(v.z, v.w));
        }
      }
    }
  }

  // Walks this CTA's items in the math warpgroups' round order, calling
  // visit(stage, group, page, phase, ahead) for each group of each block; ahead: the page
  // kKv8PrefetchBlocks blocks later in the split, or -1.
  template <typename Visit>
  __device__ static void walk(const portable::DecodeParams& p, const portable::ScheduleLayout& layout, int item_begin,
                              int item_end, Visit&& visit) {
    uint32_t uses[kStages] = {0, 0};
    for (int item = item_begin; item < item_end; ++item) {
      const portable::SplitEntry e = layout.entries[item];
      const int n_tiles = (e.end - e.begin + kBlockN - 1) / kBlockN;
      const int* pages = p.block_table + e.seq * p.bt_stride + e.begin / kBlockN;  // splits start on pages
      for (int blk0 = 0; blk0 < n_tiles; blk0 += kStages) {
        const int blocks = min(kStages, n_tiles - blk0);
        for (int g = 0; g < 2; ++g)
          for (int st = 0; st < blocks; ++st) {
            const int later = blk0 + st + kKv8PrefetchBlocks;
            visit(st, g, pages[blk0 + st], uses[st] & 1, kKv8PrefetchBlocks > 0 && later < n_tiles ? pages[later] : -1);
          }
        for (int st = 0; st < blocks; ++st) ++uses[st];
      }
    }
  }

  // The producer warpgroup's part of the kernel for an 8-bit format.
  __device__ static void run(const Smem& sm, const KvMaps& maps, const portable::DecodeParams& p,
                             const portable::ScheduleLayout& layout, int item_begin, int item_end, int warp, int lane) {
    if (warp == kLoaderWarp) {
      if (lane != 0) return;
      asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(&maps.kv)) : "memory");
      const bool evict_first = p.units <= kEvictFirstUnits;
      const uint64_t policy = evict_first_policy();
      // A page's bytes: 64 tokens at the cache's token stride, up to the last token's end
      // (strides and token widths are multiples of 16 bytes).
      const uint32_t page_bytes = static_cast<uint32_t>((kBlockN - 1) * p.kv_stride_token + (kDs ? kDsTokenBytes : kDqk));
      walk(p, layout, item_begin, item_end, [&](int st, int g, int page, uint32_t phase, int ahead) {
        if (kKv8Probe < 2 && g == 0 && ahead >= 0)
          prefetch_l2(static_cast<const unsigned char*>(p.kv) + static_cast<int64_t>(ahead) * p.kv_stride_block, page_bytes);
        mbar_wait(sm.empty(st, g), phase ^ 1);
        load_group(sm, maps, st, g, page, evict_first, policy);
      });
      return;
    }
    const int ctid = (warp - kProducerWarp) * 32 + lane;
    walk(p, layout, item_begin, item_end, [&](int st, int g, int, uint32_t phase, int) {
      mbar_wait(sm.staged(st, g), phase);
      if constexpr (kKv8Probe != 1 && kKv8Probe != 3) convert_group(sm, st, g, ctid);
      fence_async_smem();  // the generic-proxy writes above are read next by wgmma
      mbar_arrive(sm.full(st, g));
    });
  }
};

}  // namespace mla::cuda::hopper
