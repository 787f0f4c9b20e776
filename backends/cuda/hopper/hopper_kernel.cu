// The Hopper split-KV decode kernel (roles and tile sizes: hopper_config.cuh). Persistent:
// CTA k is row tile (unit) k % units of piece k / units of the device-side schedule
// (hopper_scheduler.cu) and walks the splits [cta_first[piece], cta_first[piece + 1]). The
// `units` CTAs of one piece read the same KV blocks at about the same time, so all but the
// first find them in L2. The producer threads and the math warpgroups walk the same splits, so
// KV loads of the next split overlap the math of the current one. The math follows the
// "seesaw" schedule of hopper_config.cuh: two KV blocks per round, one per warpgroup.
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <vector>
#include <cmath>
#include <string>

#include "../cuda_check.hpp"
#include "../portable/mma_sm80.cuh"  // cp_async_16, the 16-bit packing
#include "hopper_config.cuh"
#include "hopper_launch.hpp"
#include "hopper_ptx.cuh"
#include "kernel_residency.hpp"
#include "hopper_smem.cuh"
#include "kv8_producer.cuh"
#include "query_to_fp16.cuh"
#include "tensor_map.hpp"
#include "wgmma_sm90.cuh"

namespace mla::cuda::hopper {
namespace {

using portable::DecodeParams;
using portable::KvRead;
using portable::ScheduleLayout;
using portable::SplitEntry;

// Set to true only after scripts/gpu_check.sh passed with this kernel selected.
constexpr bool kVerified = true;

// Two floats as the kernel's 16-bit element type T (bf16 or fp16), low half first.
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  return portable::Mma<T>::pack(lo, hi);
}
__device__ __forceinline__ int visible_keys(int len, int s_q, int t, bool causal) {
  if (!causal || s_q == 1) return len;
  int n = len - s_q + t + 1;
  return n < 0 ? 0 : (n > len ? len : n);
}
// Box of position `i` (0..8) in the order warpgroup `stage` consumes its block for S: its own
// group A (V boxes [4 stage, 4 stage + 4)) first, then group B, the rope box last.
__device__ __forceinline__ int s_box(int stage, int i) { return i < 8 ? ((i + 4 * stage) & 7) : kRopeBox; }

// S = Q K^T of the block in `stage` (64 rows x 64 keys, fp32), k-steps issued as the groups land.
template <typename T>
__device__ __forceinline__ void compute_s(float (&s)[32], const Smem& sm, int stage, uint32_t phase) {
  const uint64_t q_desc = smem_desc(sm.q, 16, 1024), k_desc = smem_desc(sm.tile(stage), 16, 1024);
  mbar_wait(sm.full(stage, 0), phase);
  wgmma_fence();
#pragma unroll
  for (int i = 0; i < kBoxes; ++i) {
    if (i == kVBoxesPerWarpgroup) {  // group A issued; group B's boxes next
      wgmma_commit();
      mbar_wait(sm.full(stage, 1), phase);
      wgmma_fence();
    }
    const uint32_t box = s_box(stage, i) * kBoxBytes;
#pragma unroll
    for (int k = 0; k < kBoxCols / 16; ++k)
      wgmma_m64n64k16_ss<T>(s, desc_plus(q_desc, box + k * 32), desc_plus(k_desc, box + k * 32), (i | k) != 0);
  }
  wgmma_commit();
  wgmma_wait_all();
  fence_regs(s);
}

// Scale to the log2 domain and mask keys a row may not see (-inf); returns the row maxima
// (rows row0, row0 + 8), reduced over the 4 threads that share a row.
__device__ __forceinline__ void mask_and_max(float (&s)[32], float (&mx)[2], int key0, const int (&limit)[2], int c,
                                             const float (&scale_log2)[2]) {
  mx[0] = mx[1] = -INFINITY;
  if (key0 + kBlockN <= min(limit[0], limit[1])) {  // every key visible to both rows: no mask
#pragma unroll
    for (int j = 0; j < kBlockN / 8; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int h = q >> 1;
        s[4 * j + q] *= scale_log2[h];
        mx[h] = fmaxf(mx[h], s[4 * j + q]);
      }
  } else {
#pragma unroll
    for (int j = 0; j < kBlockN / 8; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int h = q >> 1;
        const int key = key0 + 8 * j + 2 * c + (q & 1);
        const float v = key < limit[h] ? s[4 * j + q] * scale_log2[h] : -INFINITY;
        s[4 * j + q] = v;
        mx[h] = fmaxf(mx[h], v);
      }
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
    mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
  }
}

// s <- exp2(s - base) per row; adds the row sums of this thread's columns to l.
__device__ __forceinline__ void exponentiate(float (&s)[32], const float (&base)[2], float (&l)[2]) {
#pragma unroll
  for (int j = 0; j < kBlockN / 8; ++j)
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int h = q >> 1;
      const float v = fast_exp2(s[4 * j + q] - base[h]);
      s[4 * j + q] = v;
      l[h] += v;
    }
}

// O rows times a0 (row0) and a1 (row0 + 8). Once a row's max has settled the factor is 1, and
// the 128 multiplies are skipped when that holds for the whole warp (measured: 5-8% on the
// compute-bound rows, docs/perf/h100.md).
__device__ __forceinline__ void scale_rows(float (&o)[128], float a0, float a1) {
  if (__all_sync(0xffffffffu, a0 == 1.f && a1 == 1.f)) return;
#pragma unroll
  for (int j = 0; j < 32; ++j) {
    o[4 * j + 0] *= a0;
    o[4 * j + 1] *= a0;
    o[4 * j + 2] *= a1;
    o[4 * j + 3] *= a1;
  }
}

// P (bf16) in the A-operand register layout of wgmma: k-step kk covers keys [16 kk, 16 kk + 16).
template <typename T>
__device__ __forceinline__ void pack_p(uint32_t (&a)[16], const float (&s)[32]) {
#pragma unroll
  for (int i = 0; i < 16; ++i) a[i] = pack2<T>(s[2 * i], s[2 * i + 1]);
}

// P (times `mul` per row) into the rope box of `stage`, K-major 128B-swizzled (the A operand of
// the other warpgroup's P V): key 8 j + 2 c of a row is in 16-byte chunk j.
template <typename T>
__device__ __forceinline__ void store_p(const Smem& sm, int stage, const float (&s)[32], int row0, int c,
                                        float mul0, float mul1) {
  unsigned char* box = sm.tile_ptr(stage) + kRopeBox * kBoxBytes;
#pragma unroll
  for (int j = 0; j < kBlockN / 8; ++j) {
    *reinterpret_cast<uint32_t*>(box + swz(row0, j) + 4 * c) = pack2<T>(s[4 * j] * mul0, s[4 * j + 1] * mul0);
    *reinterpret_cast<uint32_t*>(box + swz(row0 + 8, j) + 4 * c) = pack2<T>(s[4 * j + 2] * mul1, s[4 * j + 3] * mul1);
  }
}

// Key rows of the block past the sequence's length may hold anything (NaN): P is 0 there, but
// 0 x NaN is NaN, so the warpgroup that computed S zeroes them in all 8 V boxes before anyone
// reads V. Then the warpgroup's threads meet, so its own P V sees the zeros.
__device__ __forceinline__ void zero_tail_rows(const Smem& sm, int stage, int valid_rows, int wtid, int wg) {
  if (valid_rows >= kBlockN) return;
  const int bad = kBlockN - valid_rows;
  for (int idx = wtid; idx < bad * 8 * 8; idx += 128) {
    const int r = valid_rows + idx / 64, box = (idx / 8) % 8, chunk = idx % 8;
    *reinterpret_cast<uint4*>(sm.tile_ptr(stage) + box * kBoxBytes + r * 128 + chunk * 16) = make_uint4(0, 0, 0, 0);
  }
  fence_async_smem();
  named_sync(kBarWarpgroup0 + wg, 128);
}

// B operand of k-step kk of P V: keys [16 kk, 16 kk + 16) of warpgroup wg's 4 V boxes of
// `stage`, read N-major (LBO: the next 64-column box; SBO: the next 8 keys).
__device__ __forceinline__ uint64_t v_desc(const Smem& sm, int stage, int wg, int kk) {
  return desc_plus(smem_desc(sm.kv, kBoxBytes, 1024),
                   stage * kTileBytes + (wg * kVBoxesPerWarpgroup) * kBoxBytes + kk * 16 * 128);
}

// O += P V with P from registers (this warpgroup's own block) and V = its 4 boxes of `stage`.
template <typename T>
__device__ __forceinline__ void pv_from_registers(float (&o)[128], const uint32_t (&a)[16], const Smem& sm, int stage,
                                                  int wg) {
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < kBlockN / 16; ++kk) {
    const uint32_t frag[4] = {a[4 * kk], a[4 * kk + 1], a[4 * kk + 2], a[4 * kk + 3]};
    wgmma_m64n256k16_rs_tb<T>(o, frag, v_desc(sm, stage, wg, kk));
  }
  wgmma_commit();
}

// O += P V with P from the rope box of `stage` (the other warpgroup's block).
template <typename T>
__device__ __forceinline__ void pv_from_smem(float (&o)[128], const Smem& sm, int stage, int wg) {
  const uint64_t p_desc = smem_desc(sm.tile(stage) + kRopeBox * kBoxBytes, 16, 1024);
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < kBlockN / 16; ++kk)
    wgmma_m64n256k16_ss_tb<T>(o, desc_plus(p_desc, kk * 32), v_desc(sm, stage, wg, kk));
  wgmma_commit();
}

__device__ __forceinline__ float base_of(float m) { return m == -INFINITY ? 0.f : m; }

// R: how the KV cache is read (16-bit elements of T by TMA, or an 8-bit format dequantized by
// the producer warpgroup, kv8_producer.cuh); the math is the same for every R.
template <typename T, KvRead R>
__global__ void __launch_bounds__(kThreads, 1)
    hopper_decode_kernel(const __grid_constant__ KvMaps maps, const DecodeParams p, const ScheduleLayout layout) {
  // The tensor cores' input type: T, except for 8-bit caches, whose values are exact
  // in fp16 (one conversion instruction per pair, against four to bf16); a bf16 query then goes
  // to fp16 with a per-row power of two (QueryToFp16) so no value leaves fp16's range.
  using M = typename KvMma<T, R>::type;
  // Let the combine kernel (launched with programmatic stream serialization) get going; it
  // reads only the scheduler's split counts before it waits for this grid's completion.
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
  extern __shared__ unsigned char smem_raw[];
  const uint32_t raw = smem_u32(smem_raw);
  unsigned char* smem = smem_raw + (((raw + kSmemAlign - 1) & ~uint32_t(kSmemAlign - 1)) - raw);
  const Smem sm = Smem::carve(smem);
  unsigned char* q_s = smem;

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  if (tid == 0) {
    for (int st = 0; st < kStages; ++st)
      for (int g = 0; g < 2; ++g) {
        // 16-bit caches: the producer's expect_tx arrival; 8-bit: every converter's.
        mbar_init(sm.full(st, g), R == KvRead::plain ? 1 : kConvertThreads);
        mbar_init(sm.empty(st, g), 128);  // every thread of the one warpgroup that frees the group
        mbar_init(sm.staged(st, g), 1);
      }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    fence_async_smem();
  }
  __syncthreads();

  const int piece = blockIdx.x / p.units, unit = blockIdx.x % p.units;
  const int item_begin = layout.cta_first[piece];
  const int item_end = layout.cta_first[piece + 1];

  if (warp >= kProducerWarp) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(RegisterSplit<R != KvRead::plain>::kProducer));
    if constexpr (R != KvRead::plain) {
      Kv8Producer<T, R>::run(sm, maps, p, layout, item_begin, item_end, warp, lane);
      return;
    }
    // ---------------- producers: TMA loads, one thread per stage ----------------
    const int stage = warp - kProducerWarp;
    if (stage < kStages && lane == 0) {
      asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(&maps.kv)) : "memory");
      uint32_t uses = 0;
      // KV read by one or two CTAs (row tiles) is marked evict-first in L2: it leaves room for
      // the blocks other SMs are about to read (measured: -8% on b2 h128, -4% on h16). With
      // more row tiles the later ones read it from L2, so it keeps the normal policy.
      const bool evict_first = p.units <= kEvictFirstUnits;
      const uint64_t policy = evict_first_policy();
      for (int item = item_begin; item < item_end; ++item) {
        const SplitEntry e = layout.entries[item];
        const int n_tiles = (e.end - e.begin + kBlockN - 1) / kBlockN;
        const int first_page = e.begin / kBlockN;  // splits start on block boundaries
        for (int blk = stage; blk < n_tiles; blk += kStages, ++uses) {
          const uint32_t phase = uses & 1;
          const int page = p.block_table[e.seq * p.bt_stride + first_page + blk];
          // Group g: positions [4 g, 4 g + 4) of s_box (group B also the rope box), refilled
          // once its last reader has released it.
          for (int g = 0; g < 2; ++g) {
            mbar_wait(sm.empty(stage, g), phase ^ 1);
            mbar_expect_tx(sm.full(stage, g), g == 0 ? kGroupABytes : kGroupBBytes);
            for (int i = g * kVBoxesPerWarpgroup; i < (g == 0 ? kVBoxesPerWarpgroup : kBoxes); ++i) {
              const int box = s_box(stage, i);
              tma_load(sm.tile(stage) + box * kBoxBytes, &maps.kv, box * kBoxCols, 0, page, sm.full(stage, g),
                       evict_first, policy);
            }
          }
        }
      }
    }
    return;
  }

  // ---------------- math warpgroups ----------------
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(RegisterSplit<R != KvRead::plain>::kMath));
  const int wg = warp / 4;          // output columns [256 wg, 256 wg + 256); S of the stage-wg block
  const int wtid = tid % 128;       // thread within the warpgroup
  const int g = lane / 4, c = lane % 4;
  const int row0 = (warp % 4) * 16 + g;  // this thread's rows: row0 and row0 + 8
  const T* q_base = static_cast<const T*>(p.q);
  uint32_t uses0 = 0, uses1 = 0, rounds = 0, items_done = 0;
  // fp8_e4m3's per-tensor scale multiplies every key, so every score (and every output value).
  const float scale_log2 = R == KvRead::fp8_per_tensor ? p.scale_log2 * __ldg(p.kv_scale) : p.scale_log2;
  if constexpr (!std::is_same_v<M, T> || R == KvRead::int8_per_channel) QueryToFp16<T, R>::init(sm, tid);
  if constexpr (R == KvRead::int8_per_channel) {
    // int8's per-channel scales of the output columns, for the epilogue (the scale area is
    // fp8_ds_mla's alone; the first item's barrier orders these stores before any read).
    float* col_scales = reinterpret_cast<float*>(sm.scales_ptr);
    for (int col = tid; col < kDv; col += kMathThreads) col_scales[col] = __ldg(p.kv_scale + col);
  }

  for (int item = item_begin; item < item_end; ++item) {
    const SplitEntry e = layout.entries[item];
    const int mtile = unit;
    const int n_tiles = (e.end - e.begin + kBlockN - 1) / kBlockN;

    // Q tile -> shared memory in the TMA 128B-swizzled box layout wgmma reads (K-major), by
    // cp.async: every thread's 18 chunks are in flight together and need no registers, so an
    // item pays one memory latency for Q, not 18 (a load-store loop waited on each load:
    // measured 5% of the math warps' time at b 64, h_q 128, 4k). Padding rows read 0 bytes and
    // are zero-filled. Both warpgroups must be done with the previous item's Q first.
    named_sync(kBarMath, kMathThreads);
#pragma unroll 6
    for (int i = 0; i < kQChunksPerThread; ++i) {
      const int idx = tid + i * kMathThreads;
      const int r = idx / (kDqk / 8), ch = idx % (kDqk / 8);
      const int gr = mtile * kRows + r;
      const bool real = gr < p.rows_per_group;
      const int t = real ? gr / p.heads_per_kv : 0, head = real ? gr % p.heads_per_kv : 0;
      portable::cp_async_16(q_s + (ch / 8) * kBoxBytes + swz(r, ch % 8),
                            q_base + e.seq * p.q_stride_b + t * p.q_stride_t + head * p.q_stride_h + ch * 8, real);
    }
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    float row_scale_log2[2] = {scale_log2, scale_log2};
    if constexpr (!std::is_same_v<M, T> || R == KvRead::int8_per_channel) {
      // The Q tile to M: int8's per-channel scales folded in, each row times a power of two
      // 2^e_r that puts its largest magnitude in [2^14, 2^15) (exact in fp16 to 2^-11; S is
      // scaled back by 2^-e_r with the softmax scale).
      QueryToFp16<T, R>::convert(q_s, sm, p.kv_scale, tid, items_done & 1);
      named_sync(kBarMath, kMathThreads);  // every row's maximum is in
      QueryToFp16<T, R>::rescale(q_s, sm, p.kv_scale, tid, items_done & 1);
#pragma unroll
      for (int h = 0; h < 2; ++h) row_scale_log2[h] = scale_log2 * QueryToFp16<T, R>::row_factor(sm, row0 + 8 * h, items_done & 1);
    }
    ++items_done;
    fence_async_smem();  // generic-proxy stores, read next by wgmma (async proxy)
    named_sync(kBarMath, kMathThreads);

    int limit[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int gr = mtile * kRows + row0 + 8 * h;
      const int t = gr < p.rows_per_group ? gr / p.heads_per_kv : 0;
      limit[h] = min(e.end, visible_keys(e.len, p.s_q, t, p.causal != 0));
    }

    float o[128];
#pragma unroll
    for (int i = 0; i < 128; ++i) o[i] = 0.f;
    float m[2] = {-INFINITY, -INFINITY};  // running max (log2 domain), the same in both warpgroups
    float l[2] = {0.f, 0.f};              // this warpgroup's share of this thread's row sums

    for (int blk0 = 0; blk0 < n_tiles; blk0 += 2, ++rounds) {
      const bool has1 = blk0 + 1 < n_tiles;  // a round with one block leaves stage 1 alone
      const int par = rounds & 1;
      const int key0 = e.begin + blk0 * kBlockN;  // first key of the stage-0 block
      float s[32];
      uint32_t a[16];
      if (wg == 0) {
        // ---- S0, softmax with the new max m0, O_L += P0 V0_L ----
        compute_s<M>(s, sm, 0, uses0 & 1);
        float mx[2], base0[2], scale0[2];
        mask_and_max(s, mx, key0, limit, c, row_scale_log2);
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const float m0 = fmaxf(m[h], mx[h]);
          base0[h] = base_of(m0);
          scale0[h] = exp2f(m[h] - base0[h]);
          if (c == 0) sm.max0(par)[row0 + 8 * h] = m0;
          l[h] *= scale0[h];
        }
        named_arrive(kBarMax0, kMathThreads);
        exponentiate(s, base0, l);
        scale_rows(o, scale0[0], scale0[1]);
        zero_tail_rows(sm, 0, e.len - key0, wtid, 0);
        pack_p<M>(a, s);
        pv_from_registers<M>(o, a, sm, 0, 0);
        // ---- while that runs: P0, rescaled to warpgroup 1's max, for warpgroup 1 ----
        named_sync(kBarScale1, kMathThreads);
        float scale1[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          scale1[h] = sm.scale1(par)[row0 + 8 * h];
          m[h] = sm.max1(par)[row0 + 8 * h];
        }
        store_p<M>(sm, 0, s, row0, c, scale1[0], scale1[1]);
        fence_async_smem();
        named_arrive(kBarP0, kMathThreads);
        wgmma_wait_all();
        fence_regs(o);
        fence_regs(a);
        mbar_arrive(sm.empty(0, 0));  // V boxes 0-3 of stage 0: done
        l[0] *= scale1[0];
        l[1] *= scale1[1];
        scale_rows(o, scale1[0], scale1[1]);
        if (has1) {
          // ---- O_L += P1 V1_L ----
          named_sync(kBarP1, kMathThreads);
          pv_from_smem<M>(o, sm, 1, 0);
          wgmma_wait_all();
          fence_regs(o);
          mbar_arrive(sm.empty(1, 1));  // V boxes 0-3 and P of stage 1: done
        }
      } else {
        // ---- S1 and its max, folded into warpgroup 0's ----
        float mx[2] = {-INFINITY, -INFINITY};
        if (has1) {
          compute_s<M>(s, sm, 1, uses1 & 1);
          mask_and_max(s, mx, key0 + kBlockN, limit, c, row_scale_log2);
        }
        named_sync(kBarMax0, kMathThreads);
        float base1[2], scale01[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const float m0 = sm.max0(par)[row0 + 8 * h];
          const float m1 = fmaxf(m0, mx[h]);
          base1[h] = base_of(m1);
          const float scale1 = exp2f(m0 - base1[h]);
          scale01[h] = exp2f(m[h] - base1[h]);  // = scale0 x scale1
          if (c == 0) {
            sm.scale1(par)[row0 + 8 * h] = scale1;
            sm.max1(par)[row0 + 8 * h] = m1;
          }
          m[h] = m1;
          l[h] *= scale01[h];
        }
        named_arrive(kBarScale1, kMathThreads);
        scale_rows(o, scale01[0], scale01[1]);
        if (has1) {
          // ---- O_R += P1 V1_R; P1 for warpgroup 0 ----
          exponentiate(s, base1, l);
          zero_tail_rows(sm, 1, e.len - key0 - kBlockN, wtid, 1);
          pack_p<M>(a, s);
          pv_from_registers<M>(o, a, sm, 1, 1);
          store_p<M>(sm, 1, s, row0, c, 1.f, 1.f);
          fence_async_smem();
          named_arrive(kBarP1, kMathThreads);
          wgmma_wait_all();
          fence_regs(o);
          fence_regs(a);
          mbar_arrive(sm.empty(1, 0));  // V boxes 4-7 of stage 1: done
        }
        // ---- O_R += P0 V0_R ----
        named_sync(kBarP0, kMathThreads);
        pv_from_smem<M>(o, sm, 0, 1);
        wgmma_wait_all();
        fence_regs(o);
        mbar_arrive(sm.empty(0, 1));  // V boxes 4-7 and P of stage 0: done
      }
      ++uses0;
      if (has1) ++uses1;
    }

    // ---- epilogue: normalise, write out + lse, or the fp32 partial of this split ----
    // Each warpgroup summed P over its own blocks: add the other half.
    float lsum[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      lsum[h] = l[h];
      lsum[h] += __shfl_xor_sync(0xffffffffu, lsum[h], 1);
      lsum[h] += __shfl_xor_sync(0xffffffffu, lsum[h], 2);
      if (c == 0) sm.row_sum(wg)[row0 + 8 * h] = lsum[h];
    }
    named_sync(kBarMath, kMathThreads);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float sum = lsum[h] + sm.row_sum(1 - wg)[row0 + 8 * h];
      const int gr = mtile * kRows + row0 + 8 * h;
      if (gr >= p.rows_per_group) continue;
      const int t = gr / p.heads_per_kv, head = gr % p.heads_per_kv;
      const bool empty = !(sum > 0.f);
      const float inv = empty ? 0.f : 1.f / sum;
      const float lse = empty ? INFINITY : (m[h] + log2f(sum)) * 0.69314718055994530942f;
      const int col0 = wg * kColsPerWarpgroup + 2 * c;
      // The KV scales of the output columns (V = the latent part of the keys): 1, fp8_e4m3's
      // per-tensor scale, or int8's per-channel scales of columns col0 + 8 j (+ 1).
      auto col_scale = [&](int j, int k) -> float {
        if constexpr (R == KvRead::fp8_per_tensor) return __ldg(p.kv_scale);
        else if constexpr (R == KvRead::int8_per_channel) return ld_shared_f32(sm.scales + 4 * (col0 + 8 * j + k));
        else return 1.f;
      };
      if (e.slot < 0) {
        T* out = static_cast<T*>(p.out) + e.seq * p.out_stride_b + t * p.out_stride_t +
                             head * p.out_stride_h + col0;
#pragma unroll
        for (int j = 0; j < 32; ++j)
          *reinterpret_cast<uint32_t*>(out + 8 * j) =
              pack2<T>(o[4 * j + 2 * h] * inv * col_scale(j, 0), o[4 * j + 2 * h + 1] * inv * col_scale(j, 1));
        if (c == 0 && wg == 0) p.lse[e.seq * p.lse_stride_b + head * p.lse_stride_h + t * p.lse_stride_t] = lse;
      } else {
        const int prow = t * p.h_q + head;
        const int64_t rows_per_seq = static_cast<int64_t>(p.s_q) * p.h_q;
        float* out = layout.partial_out + (e.slot * rows_per_seq + prow) * kDv + col0;
#pragma unroll
        for (int j = 0; j < 32; ++j)
          *reinterpret_cast<float2*>(out + 8 * j) =
              make_float2(o[4 * j + 2 * h] * inv * col_scale(j, 0), o[4 * j + 2 * h + 1] * inv * col_scale(j, 1));
        if (c == 0 && wg == 0) layout.partial_lse[e.slot * rows_per_seq + prow] = empty ? -INFINITY : lse;
      }
    }
  }
}

// Every instantiation: (element type, KV read) -> kernel.
template <typename T>
const void* kernel_for(KvRead r) {
  switch (r) {
    case KvRead::fp8_per_tensor: return reinterpret_cast<const void*>(&hopper_decode_kernel<T, KvRead::fp8_per_tensor>);
    case KvRead::int8_per_channel: return reinterpret_cast<const void*>(&hopper_decode_kernel<T, KvRead::int8_per_channel>);
    case KvRead::fp8_ds_mla: return reinterpret_cast<const void*>(&hopper_decode_kernel<T, KvRead::fp8_ds_mla>);
    default: return reinterpret_cast<const void*>(&hopper_decode_kernel<T, KvRead::plain>);
  }
}
const void* kernel_for(portable::Elem elem, KvRead r) {
  return elem == portable::Elem::fp16 ? kernel_for<__half>(r) : kernel_for<__nv_bfloat16>(r);
}
constexpr KvRead kAllReads[] = {KvRead::plain, KvRead::fp8_per_tensor, KvRead::int8_per_channel, KvRead::fp8_ds_mla};

}  // namespace

bool verified() { return kVerified; }
int rows_per_cta() { return kRows; }
int block_keys() { return kBlockN; }
int threads_per_cta() { return kThreads; }
int max_batch() { return kMaxBatch; }
size_t smem_bytes() { return kSmemBytes; }

int prepare() {
  std::vector<const void*> kernels;
  for (portable::Elem elem : {portable::Elem::bf16, portable::Elem::fp16})
    for (KvRead r : kAllReads) kernels.push_back(kernel_for(elem, r));
  return prepare_kernels(kernels, kThreads, kSmemBytes, "hopper_decode_kernel");
}

void launch_decode(portable::Elem elem, int grid, const DecodeParams& p, int64_t kv_blocks,
                   const ScheduleLayout& layout, cudaStream_t stream) {
  if (p.page_size != kBlockN || p.h_kv != 1)
    fail(ErrorCode::unsupported, "cuda hopper kernel: needs page size 64 and h_kv = 1");
  const bool plain = p.kv_read == KvRead::plain;
  // TMA: 16-byte aligned base and strides (8 16-bit elements, or 16 bytes of an 8-bit cache).
  const int64_t align = plain ? 8 : 16;
  if (p.kv_stride_token % align != 0 || p.kv_stride_block % align != 0 || reinterpret_cast<uintptr_t>(p.kv) % 16 != 0)
    fail(ErrorCode::unsupported, "cuda hopper kernel: kv_cache strides must be multiples of 16 bytes, data 16-byte aligned");
  KvMaps maps;
  if (plain) {
    maps.kv = make_kv_map(p, elem == portable::Elem::fp16 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
                       2, kDqk, kv_blocks, kBoxCols, CU_TENSOR_MAP_SWIZZLE_128B, kL2Promotion);
    maps.rope = maps.scales = maps.kv;
  } else if (p.kv_read == KvRead::fp8_ds_mla) {
    maps.kv = make_kv_map(p, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, kDsTokenBytes, kv_blocks, kInBoxCols, CU_TENSOR_MAP_SWIZZLE_NONE, kL2Promotion);
    maps.rope = make_kv_map(p, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, kDsTokenBytes, kv_blocks, 2 * (kDqk - kDv),
                         CU_TENSOR_MAP_SWIZZLE_128B, kL2Promotion);
    maps.scales = make_kv_map(p, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, kDsTokenBytes, kv_blocks, 16, CU_TENSOR_MAP_SWIZZLE_NONE, kL2Promotion);
  } else {
    maps.kv = make_kv_map(p, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, kDqk, kv_blocks, kInBoxCols, CU_TENSOR_MAP_SWIZZLE_NONE, kL2Promotion);
    maps.rope = maps.scales = maps.kv;
  }
  const void* fn = kernel_for(elem, p.kv_read);
  DecodeParams params = p;
  ScheduleLayout sched = layout;
  void* args[] = {&maps, &params, &sched};
  // A plain launch (not a programmatic dependent of the scheduler kernel): the scheduler has
  // completed when this grid starts, which the combine kernel relies on when it reads the split
  // counts before waiting for this grid (portable/combine.cu).
  check(cudaLaunchKernel(fn, dim3(grid), dim3(kThreads), args, kSmemBytes, stream), "hopper_decode_kernel launch");
}

}  // namespace mla::cuda::hopper
