// The narrow Hopper decode kernel: keys on the wgmma M dimension, 8-bit KV dequantized in
// registers (roles, tile sizes and orders: narrow_config.cuh). Persistent: CTA k walks the splits
// [cta_first[k], cta_first[k + 1]) of the Hopper kernel's device-side schedule (one CTA per piece).
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <vector>
#include <cmath>
#include <string>

#include "../cuda_check.hpp"
#include "../hopper/hopper_ptx.cuh"
#include "../hopper/kernel_residency.hpp"
#include "../hopper/wgmma_sm90.cuh"
#include "../portable/mma_sm80.cuh"
#include "narrow_config.cuh"
#include "narrow_fragments.cuh"
#include "narrow_launch.hpp"

namespace mla::cuda::hopper_narrow {
namespace {

using hopper::desc_plus;
using hopper::fast_exp2;
using hopper::fence_async_smem;
using hopper::fence_regs;
using hopper::mbar_arrive;
using hopper::mbar_expect_tx;
using hopper::mbar_init;
using hopper::mbar_wait;
using hopper::named_sync;
using hopper::smem_desc;
using hopper::smem_u32;
using portable::DecodeParams;
using portable::KvRead;
using portable::ScheduleLayout;
using portable::SplitEntry;

// Set to true only after scripts/gpu_check.sh passed with this kernel selected.
constexpr bool kVerified = true;

struct NarrowSmem {
  uint32_t stages, qt, pt, bars;
  unsigned char* qt_ptr;
  unsigned char* pt_ptr;
  float* col_max;    // [4 warps][kCols]; reused for the column sums at the end
  float* col_scale;  // [kCols]
  __device__ uint32_t stage(int s) const { return stages + s * kStageBytes; }
  __device__ uint32_t full(int s) const { return bars + 8u * s; }
  __device__ uint32_t empty(int s) const { return bars + 8u * (kStages + s); }
  __device__ static NarrowSmem carve(unsigned char* smem) {
    NarrowSmem sm;
    sm.stages = smem_u32(smem);
    sm.qt_ptr = smem + kStages * kStageBytes;
    sm.qt = sm.stages + kStages * kStageBytes;
    sm.pt_ptr = sm.qt_ptr + kQBytes;
    sm.pt = sm.qt + kQBytes;
    sm.col_max = reinterpret_cast<float*>(sm.pt_ptr + kPBytes);
    sm.col_scale = sm.col_max + 4 * kCols;
    sm.bars = smem_u32(sm.col_max + kXchFloats);
    return sm;
  }
};

__device__ __forceinline__ int visible_keys(int len, int s_q, int t, bool causal) {
  if (!causal || s_q == 1) return len;
  int n = len - s_q + t + 1;
  return n < 0 ? 0 : (n > len ? len : n);
}
__device__ __forceinline__ float base_of(float m) { return m == -INFINITY ? 0.f : m; }
__device__ __forceinline__ uint4 lds128(uint32_t addr) {
  uint4 v;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(addr));
  return v;
}

// Q^T of the item's sequence in fp16, in S^T's K order (qt_offset), each row times 2^(14 - e_n)
// so its largest magnitude (times int8's per-channel scales) sits in [2^14, 2^15): no overflow,
// fp16's 11 bits for every value above 2^-28 of the row's largest. col_scale[n] gets the softmax
// scale (log2 domain) times 2^(e_n - 14). Warp w builds rows w, w + 4, ...; rows past the
// sequence's query rows and dims 576..639 are zeros.
template <typename T, KvRead R>
__device__ void build_qt(const NarrowSmem& sm, const DecodeParams& p, const SplitEntry& e, float scale_log2, int warp,
                         int lane) {
  constexpr int kPairs = kInBoxes * kInBoxCols / 2;  // 320 (288 real)
  constexpr int kPerLane = kPairs / 32;              // 10
  for (int n = warp; n < kCols; n += 4) {
    const bool real = n < p.rows_per_group;
    const int t = real ? n / p.heads_per_kv : 0, head = real ? n % p.heads_per_kv : 0;
    const T* q = static_cast<const T*>(p.q) + e.seq * p.q_stride_b + t * p.q_stride_t + head * p.q_stride_h;
    float v[kPerLane][2];
    float mx = 0.f;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int d = 2 * (lane + 32 * i);
      v[i][0] = v[i][1] = 0.f;
      if (real && d < kDqk) {
        const uint32_t bits = __ldg(reinterpret_cast<const unsigned int*>(q + d));
        const T* x = reinterpret_cast<const T*>(&bits);
        v[i][0] = static_cast<float>(x[0]);
        v[i][1] = static_cast<float>(x[1]);
        if constexpr (R == KvRead::int8_per_channel) {
          v[i][0] *= __ldg(p.kv_scale + d);
          v[i][1] *= __ldg(p.kv_scale + d + 1);
        }
      }
      mx = fmaxf(mx, fmaxf(fabsf(v[i][0]), fabsf(v[i][1])));
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    const int ex = min(max(static_cast<int>((__float_as_uint(mx) >> 23) & 0xFF) - 127, -112), 126);
    const float f = __uint_as_float(static_cast<uint32_t>(127 + 14 - ex) << 23);
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int d = 2 * (lane + 32 * i);
      const __half2 h = __floats2half2_rn(v[i][0] * f, v[i][1] * f);
      *reinterpret_cast<__half2*>(sm.qt_ptr + qt_offset(n, d)) = h;
    }
    if (lane == 0) sm.col_scale[n] = scale_log2 * __uint_as_float(static_cast<uint32_t>(127 - 14 + ex) << 23);
  }
}

// S^T = K Q^T of the page in `stage` (64 keys x 16 rows, fp32), A fragments dequantized from the
// page box by box. Keys at or past `valid` (the sequence's end) read as 0: their bytes may be
// anything, NaN included.
template <KvRead R>
__device__ __forceinline__ void compute_st(float (&st)[8], uint32_t stage, uint64_t qt_desc, int ka, int kb, int c,
                                           int valid) {
  // Half a box (4 k-steps, 16 registers) per wgmma group, two groups in flight.
  constexpr int kHalf = kKStepsPerBox / 2;
  uint32_t frag[2][kHalf][4];
#pragma unroll
  for (int G = 0; G < kInBoxes; ++G) {
    // Box G's chunks 4-7 are dims 576-639 for the rope box: zeros, not read.
    const bool rope = G == kInBoxes - 1;  // known at compile time (unrolled)
    uint4 ra = lds128(stage + page_chunk(ka, G, c)), rb = lds128(stage + page_chunk(kb, G, c));
    uint4 ra4 = rope ? make_uint4(0, 0, 0, 0) : lds128(stage + page_chunk(ka, G, c + 4));
    uint4 rb4 = rope ? make_uint4(0, 0, 0, 0) : lds128(stage + page_chunk(kb, G, c + 4));
    // The previous page's P V products may still run: the first box's bytes are read meanwhile,
    // but nothing that feeds a wgmma is written before they are done (ptxas would otherwise
    // serialise every wgmma of the kernel: C7513).
    if (G == 0) hopper::wgmma_wait<0>();
    if (valid < kBlockN) {  // the sequence's last page (warp-uniform): no selects elsewhere
      if (ka >= valid) ra = ra4 = make_uint4(0, 0, 0, 0);
      if (kb >= valid) rb = rb4 = make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      uint32_t(&a)[kHalf][4] = frag[h];
      if (G > 0) {
        hopper::wgmma_wait<1>();  // the group that read these registers is done
#pragma unroll
        for (int k = 0; k < kHalf; ++k) fence_regs(a[k]);
      }
#pragma unroll
      for (int k = 0; k < kHalf; ++k) {
        const int kk = h * kHalf + k;
        a[k][0] = pair_to_f16x2<R>(word_of(ra, kk / 2), kk & 1);
        a[k][1] = pair_to_f16x2<R>(word_of(rb, kk / 2), kk & 1);
        a[k][2] = pair_to_f16x2<R>(word_of(ra4, kk / 2), kk & 1);
        a[k][3] = pair_to_f16x2<R>(word_of(rb4, kk / 2), kk & 1);
      }
      hopper::wgmma_fence();
#pragma unroll
      for (int k = 0; k < kHalf; ++k) {
        hopper::wgmma_m64n16k16_rs<__half>(st, a[k], desc_plus(qt_desc, (2 * G + h) * kQBoxBytes + k * 32),
                                           (G | h | k) != 0);
      }
      hopper::wgmma_commit();
    }
  }
  hopper::wgmma_wait<0>();
  fence_regs(st);
#pragma unroll
  for (int b = 0; b < 2; ++b)
#pragma unroll
    for (int k = 0; k < kHalf; ++k) fence_regs(frag[b][k]);
}

// O^T += V^T P^T of the page in `stage`: k-step kk covers keys 16 kk + [0, 16); the thread's
// fragments are keys 16 kk + 2 c, + 1, + 8, + 9 of its 16 dims (one 16-byte chunk per key),
// paired key by key (byte_perm) and dequantized. Returns once the page's bytes are all read
// (the wgmma may still run).
template <KvRead R>
__device__ __forceinline__ void issue_pv(float (&o)[kMTiles][8], uint32_t stage, uint64_t pt_desc, int warp, int g, int c,
                                         int valid, uint32_t (&frag)[2][kMTiles / 2][4]) {
#pragma unroll
  for (int kk = 0; kk < kBlockN / 16; ++kk) {
    // K-index j of the k-step holds key 16 kk + pv_key(j): keys 2c, 2c + 1, 2c + 8, 2c + 9 of the
    // k-step, the pair swapped for odd c (bank groups, narrow_fragments.cuh).
    const int k0 = 16 * kk + pv_key(2 * c), k1 = 16 * kk + pv_key(2 * c + 1);
    uint4 x0 = lds128(stage + page_chunk(k0, warp, g)), x1 = lds128(stage + page_chunk(k1, warp, g));
    uint4 x2 = lds128(stage + page_chunk(k0 + 8, warp, g)), x3 = lds128(stage + page_chunk(k1 + 8, warp, g));
    if (valid < kBlockN) {
      if (k0 >= valid) x0 = make_uint4(0, 0, 0, 0);
      if (k1 >= valid) x1 = make_uint4(0, 0, 0, 0);
      if (k0 + 8 >= valid) x2 = make_uint4(0, 0, 0, 0);
      if (k1 + 8 >= valid) x3 = make_uint4(0, 0, 0, 0);
    }
    // Half the m-tiles (words 2 h, 2 h + 1 of each key's chunk; 16 registers) per wgmma group.
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      uint32_t(&a)[kMTiles / 2][4] = frag[h];
      if (kk > 0) {
        hopper::wgmma_wait<1>();
#pragma unroll
        for (int t = 0; t < kMTiles / 2; ++t) fence_regs(a[t]);
      }
#pragma unroll
      for (int w2 = 0; w2 < 2; ++w2) {
        const int i = 2 * h + w2;
        const uint32_t lo01 = __byte_perm(word_of(x0, i), word_of(x1, i), 0x5140);
        const uint32_t hi01 = __byte_perm(word_of(x0, i), word_of(x1, i), 0x7362);
        const uint32_t lo23 = __byte_perm(word_of(x2, i), word_of(x3, i), 0x5140);
        const uint32_t hi23 = __byte_perm(word_of(x2, i), word_of(x3, i), 0x7362);
        a[2 * w2][0] = pair_to_f16x2<R>(lo01, 0);
        a[2 * w2][1] = pair_to_f16x2<R>(lo01, 1);
        a[2 * w2][2] = pair_to_f16x2<R>(lo23, 0);
        a[2 * w2][3] = pair_to_f16x2<R>(lo23, 1);
        a[2 * w2 + 1][0] = pair_to_f16x2<R>(hi01, 0);
        a[2 * w2 + 1][1] = pair_to_f16x2<R>(hi01, 1);
        a[2 * w2 + 1][2] = pair_to_f16x2<R>(hi23, 0);
        a[2 * w2 + 1][3] = pair_to_f16x2<R>(hi23, 1);
      }
      hopper::wgmma_fence();
#pragma unroll
      for (int t = 0; t < kMTiles / 2; ++t)
        hopper::wgmma_m64n16k16_rs<__half>(o[4 * h + t], a[t], desc_plus(pt_desc, kk * 32), 1);
      hopper::wgmma_commit();
    }
  }
}

// The CTA's pages in the math's order (items, then blocks); each page number is read from the
// block table one page before it is needed, so nothing waits on that load.
struct PageCursor {
  int item = 0, item_end = 0, blk = 0, n_tiles = 0, page = 0;
  const int* pages = nullptr;
  __device__ bool more() const { return item < item_end; }
  __device__ void start(const DecodeParams& p, const ScheduleLayout& layout, int item_begin, int end) {
    item = item_begin - 1;
    item_end = end;
    blk = n_tiles = 0;
    advance(p, layout);
  }
  __device__ void advance(const DecodeParams& p, const ScheduleLayout& layout) {
    if (++blk >= n_tiles) {
      blk = 0;
      n_tiles = 0;
      while (n_tiles == 0 && ++item < item_end) {  // items without keys have no pages
        const SplitEntry e = layout.entries[item];
        n_tiles = (e.end - e.begin + kBlockN - 1) / kBlockN;
        pages = p.block_table + e.seq * p.bt_stride + e.begin / kBlockN;  // splits start on pages
      }
    }
    if (more()) page = __ldg(pages + blk);
  }
};

// One bulk copy (the TMA's non-tensor form) of `bytes` from global memory into shared memory,
// counted on `bar`, with an L2 cache policy.
__device__ __forceinline__ void bulk_copy(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar, uint64_t policy) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;\n" ::"r"(dst),
      "l"(src), "r"(bytes), "r"(bar), "l"(policy)
      : "memory");
}

// Thread 0's loads: the next page to bring into a stage, as one contiguous copy (the page's 64
// token rows as they are in memory). (64 x 128-byte TMA boxes per 128 columns reached 85% of the
// copy ceiling with no math at all; an L2 prefetch of the pages 4 or 8 ahead made the b 128,
// h_q 16, 8k decode 15% and 48% slower: docs/perf/h200.md.)
struct PageLoader {
  PageCursor load;
  uint64_t policy = 0;
  __device__ bool more() const { return load.more(); }
  __device__ void start(const DecodeParams& p, const ScheduleLayout& layout, int item_begin, int end) {
    policy = hopper::evict_first_policy();  // each page is read by this CTA alone, once
    load.start(p, layout, item_begin, end);
  }
  template <int kProbeMode>
  __device__ void issue(const NarrowSmem& sm, int s, const DecodeParams& p, const ScheduleLayout& layout) {
    if constexpr (kProbeMode == 2) {
      mbar_arrive(sm.full(s));
    } else {
      mbar_expect_tx(sm.full(s), kStageBytes);
      const unsigned char* src = static_cast<const unsigned char*>(p.kv) + static_cast<int64_t>(load.page) * p.kv_stride_block;
      if (p.kv_stride_token == kDqk) {  // a dense page: one copy of its 36 KiB
        bulk_copy(sm.stage(s), src, kStageBytes, sm.full(s), policy);
      } else {  // padded token rows: one copy per token
        for (int t = 0; t < kBlockN; ++t)
          bulk_copy(sm.stage(s) + t * kDqk, src + static_cast<int64_t>(t) * p.kv_stride_token, kDqk, sm.full(s), policy);
      }
    }
    load.advance(p, layout);
  }
};

// After a wgmma wait: ties O^T and the P V fragments to this point (kept alive and unmoved
// while the asynchronous products may still read or write them).
__device__ __forceinline__ void fence_pv(float (&o)[kMTiles][8], uint32_t (&frag)[2][kMTiles / 2][4]) {
#pragma unroll
  for (int t = 0; t < kMTiles; ++t) fence_regs(o[t]);
#pragma unroll
  for (int b = 0; b < 2; ++b)
#pragma unroll
    for (int t = 0; t < kMTiles / 2; ++t) fence_regs(frag[b][t]);
}

template <typename T, KvRead R>
__global__ void __launch_bounds__(kThreads, kCtasPerSm)
    narrow_decode_kernel(const DecodeParams p, const ScheduleLayout layout) {
  // The combine kernel (a programmatic dependent) reads only the scheduler's split counts
  // before it waits for this grid.
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
  extern __shared__ unsigned char smem_raw[];
  const uint32_t raw = smem_u32(smem_raw);
  unsigned char* smem = smem_raw + (((raw + kSmemAlign - 1) & ~uint32_t(kSmemAlign - 1)) - raw);
  const NarrowSmem sm = NarrowSmem::carve(smem);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  if (tid == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbar_init(sm.full(s), 1);
      mbar_init(sm.empty(s), kMathThreads);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    fence_async_smem();
  }
  __syncthreads();
  const int item_begin = layout.cta_first[blockIdx.x], item_end = layout.cta_first[blockIdx.x + 1];

  // Thread 0 issues the page copies into the two stages: the first two pages now, page u + 1 at
  // the start of page u's math (once every thread has read page u - 1, the stage's previous occupant).
  PageLoader loader;
  if (tid == 0) {
    loader.start(p, layout, item_begin, item_end);
    for (int s = 0; s < kStages && loader.more(); ++s) loader.issue<kProbe>(sm, s, p, layout);
  }

  const int g = lane / 4, c = lane % 4;
  const int ka = 16 * warp + g, kb = ka + 8;  // this thread's S^T rows (keys)
  // Their P's K-index in O^T += V^T P^T (pv_key is its own inverse).
  const int pa_slot = (ka & ~15) + pv_key(ka & 15), pb_slot = (kb & ~15) + pv_key(kb & 15);
  const int dim0 = 128 * warp + 16 * g;                    // this thread's 16 output dims
  const float scale_log2 = R == KvRead::fp8_per_tensor ? p.scale_log2 * __ldg(p.kv_scale) : p.scale_log2;
  const uint64_t qt_desc = smem_desc(sm.qt, 16, 1024), pt_desc = smem_desc(sm.pt, 16, 1024);
  uint32_t uses = 0;

  for (int item = item_begin; item < item_end; ++item) {
    const SplitEntry e = layout.entries[item];
    const int n_tiles = (e.end - e.begin + kBlockN - 1) / kBlockN;
    named_sync(kBarMath, kMathThreads);  // the previous item's Q^T, scales and sums are read
    build_qt<T, R>(sm, p, e, scale_log2, warp, lane);
    fence_async_smem();
    named_sync(kBarMath, kMathThreads);

    // This thread's columns: j = 0, 1 and e = 0, 1 -> row n = 8 j + 2 c + e (index 2 j + e).
    float cs[4], m[4], l[4];
    int limit[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int n = 8 * (i / 2) + 2 * c + (i & 1);
      cs[i] = sm.col_scale[n];
      const int t = n < p.rows_per_group ? n / p.heads_per_kv : 0;
      limit[i] = min(e.end, visible_keys(e.len, p.s_q, t, p.causal != 0));
      m[i] = -INFINITY;
      l[i] = 0.f;
    }
    const int min_limit = min(min(limit[0], limit[1]), min(limit[2], limit[3]));
    float o[kMTiles][8];
    uint32_t pv_frag[2][kMTiles / 2][4];  // in flight from one page's P V to the next page's S^T
#pragma unroll
    for (int t = 0; t < kMTiles; ++t)
#pragma unroll
      for (int i = 0; i < 8; ++i) o[t][i] = 0.f;

    for (int blk = 0; blk < n_tiles; ++blk, ++uses) {
      const int s = uses % kStages;
      const int key0 = e.begin + blk * kBlockN, valid = e.len - key0;
      if (tid == 0 && uses >= 1 && loader.more()) {
        const int next = (uses + 1) % kStages;  // held page uses - 1
        mbar_wait(sm.empty(next), ((uses - 1) / kStages) & 1);
        loader.issue<kProbe>(sm, next, p, layout);
      }
      mbar_wait(sm.full(s), (uses / kStages) & 1);
      if constexpr (kProbe == 1) {
        mbar_arrive(sm.empty(s));
        continue;
      }
      float st[8];
      compute_st<R>(st, sm.stage(s), qt_desc, ka, kb, c, valid);  // also waits for the last block's P V
      fence_pv(o, pv_frag);  // O^T and the P V fragments are settled: the rescale below may touch O^T

      // ---- column softmax: scale, mask, the block's max over the warpgroup ----
      float mx[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int j = i / 2, e2 = i & 1;
        float va = st[4 * j + e2] * cs[i], vb = st[4 * j + 2 + e2] * cs[i];
        if (key0 + kBlockN > min_limit) {
          if (key0 + ka >= limit[i]) va = -INFINITY;
          if (key0 + kb >= limit[i]) vb = -INFINITY;
        }
        st[4 * j + e2] = va;
        st[4 * j + 2 + e2] = vb;
        mx[i] = fmaxf(va, vb);
#pragma unroll
        for (int off = 4; off < 32; off <<= 1) mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], off));
      }
      if (g == 0)
#pragma unroll
        for (int i = 0; i < 4; ++i) sm.col_max[warp * kCols + 8 * (i / 2) + 2 * c + (i & 1)] = mx[i];
      named_sync(kBarMath, kMathThreads);
      float alpha[4], base[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int n = 8 * (i / 2) + 2 * c + (i & 1);
        float bm = fmaxf(fmaxf(sm.col_max[n], sm.col_max[kCols + n]), fmaxf(sm.col_max[2 * kCols + n], sm.col_max[3 * kCols + n]));
        const float mn = fmaxf(m[i], bm);
        base[i] = base_of(mn);
        alpha[i] = fast_exp2(m[i] - base[i]);
        m[i] = mn;
      }
      // ---- P = 2^(S - max) into P^T (fp16, K-major: row n, key k), the row sums, O^T rescaled ----
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int j = i / 2, e2 = i & 1, n = 8 * j + 2 * c + e2;
        const float pa = fast_exp2(st[4 * j + e2] - base[i]), pb = fast_exp2(st[4 * j + 2 + e2] - base[i]);
        l[i] = l[i] * alpha[i] + pa + pb;
        *reinterpret_cast<__half*>(sm.pt_ptr + swz(n, pa_slot / 8) + (pa_slot % 8) * 2) = __float2half_rn(pa);
        *reinterpret_cast<__half*>(sm.pt_ptr + swz(n, pb_slot / 8) + (pb_slot % 8) * 2) = __float2half_rn(pb);
      }
      if (!__all_sync(0xffffffffu, alpha[0] == 1.f && alpha[1] == 1.f && alpha[2] == 1.f && alpha[3] == 1.f)) {
#pragma unroll
        for (int t = 0; t < kMTiles; ++t)
#pragma unroll
          for (int i = 0; i < 8; ++i) o[t][i] *= alpha[2 * (i / 4) + (i & 1)];
      }
      fence_async_smem();
      named_sync(kBarMath, kMathThreads);  // P^T complete (and every column max read)

      issue_pv<R>(o, sm.stage(s), pt_desc, warp, g, c, valid, pv_frag);
      mbar_arrive(sm.empty(s));  // the page's bytes are all in registers
      // No wait here: these P V products run while the next page's S^T fragments are read and
      // converted (compute_st waits for them with its own).
    }
    hopper::wgmma_wait<0>();
    fence_pv(o, pv_frag);

    // ---- epilogue: the column sums over the warpgroup, then out + lse or the split's partial ----
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int off = 4; off < 32; off <<= 1) l[i] += __shfl_xor_sync(0xffffffffu, l[i], off);
    named_sync(kBarMath, kMathThreads);  // every column max of the last block is read
    if (g == 0)
#pragma unroll
      for (int i = 0; i < 4; ++i) sm.col_max[warp * kCols + 8 * (i / 2) + 2 * c + (i & 1)] = l[i];
    named_sync(kBarMath, kMathThreads);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int j = i / 2, e2 = i & 1, n = 8 * j + 2 * c + e2;
      if (n >= p.rows_per_group) continue;
      const float sum = sm.col_max[n] + sm.col_max[kCols + n] + sm.col_max[2 * kCols + n] + sm.col_max[3 * kCols + n];
      const int t = n / p.heads_per_kv, head = n % p.heads_per_kv;
      const bool none = !(sum > 0.f);
      const float inv = none ? 0.f : 1.f / sum;
      const float lse = none ? INFINITY : (m[i] + log2f(sum)) * 0.69314718055994530942f;
      // Dim dim0 + jj is m-tile 2 (jj / 4) + (jj / 2) % 2, row g (+ 8 when jj is odd).
      float v[16];
#pragma unroll
      for (int jj = 0; jj < 16; ++jj) {
        const int mt = 2 * (jj / 4) + (jj / 2) % 2;
        float scale = inv;
        if constexpr (R == KvRead::fp8_per_tensor) scale *= __ldg(p.kv_scale);
        else if constexpr (R == KvRead::int8_per_channel) scale *= __ldg(p.kv_scale + dim0 + jj);
        v[jj] = o[mt][4 * j + 2 * (jj % 2) + e2] * scale;
      }
      if (e.slot < 0) {
        T* out = static_cast<T*>(p.out) + e.seq * p.out_stride_b + t * p.out_stride_t + head * p.out_stride_h + dim0;
        uint32_t packed[8];
#pragma unroll
        for (int k = 0; k < 8; ++k) packed[k] = portable::Mma<T>::pack(v[2 * k], v[2 * k + 1]);
        reinterpret_cast<uint4*>(out)[0] = make_uint4(packed[0], packed[1], packed[2], packed[3]);
        reinterpret_cast<uint4*>(out)[1] = make_uint4(packed[4], packed[5], packed[6], packed[7]);
        if (warp == 0 && g == 0) p.lse[e.seq * p.lse_stride_b + head * p.lse_stride_h + t * p.lse_stride_t] = lse;
      } else {
        const int prow = t * p.h_q + head;
        const int64_t rows_per_seq = static_cast<int64_t>(p.s_q) * p.h_q;
        float4* out = reinterpret_cast<float4*>(layout.partial_out + (e.slot * rows_per_seq + prow) * kDv + dim0);
#pragma unroll
        for (int k = 0; k < 4; ++k) out[k] = make_float4(v[4 * k], v[4 * k + 1], v[4 * k + 2], v[4 * k + 3]);
        if (warp == 0 && g == 0) layout.partial_lse[e.slot * rows_per_seq + prow] = none ? -INFINITY : lse;
      }
    }
  }
}

template <typename T>
const void* kernel_for(KvRead r) {
  if (r == KvRead::int8_per_channel) return reinterpret_cast<const void*>(&narrow_decode_kernel<T, KvRead::int8_per_channel>);
  return reinterpret_cast<const void*>(&narrow_decode_kernel<T, KvRead::fp8_per_tensor>);
}
const void* kernel_for(portable::Elem elem, KvRead r) {
  return elem == portable::Elem::fp16 ? kernel_for<__half>(r) : kernel_for<__nv_bfloat16>(r);
}

}  // namespace

bool verified() { return kVerified; }
int max_rows() { return kCols; }
int threads_per_cta() { return kThreads; }
size_t smem_bytes() { return kSmemBytes; }

int prepare() {
  std::vector<const void*> kernels;
  for (portable::Elem elem : {portable::Elem::bf16, portable::Elem::fp16})
    for (KvRead r : {KvRead::fp8_per_tensor, KvRead::int8_per_channel}) kernels.push_back(kernel_for(elem, r));
  return hopper::prepare_kernels(kernels, kThreads, kSmemBytes, "narrow_decode_kernel");
}

void launch_decode(portable::Elem elem, int grid, const DecodeParams& p, int64_t kv_blocks, const ScheduleLayout& layout,
                   cudaStream_t stream) {
  if (p.page_size != kBlockN || p.h_kv != 1 || p.rows_per_group > kCols)
    fail(ErrorCode::unsupported, "cuda narrow kernel: needs page size 64, h_kv = 1 and s_q x h_q <= 16");
  if (p.kv_read != KvRead::fp8_per_tensor && p.kv_read != KvRead::int8_per_channel)
    fail(ErrorCode::unsupported, "cuda narrow kernel: reads the fp8_e4m3 and int8 caches only");
  if (p.kv_stride_token % 16 != 0 || p.kv_stride_block % 16 != 0 || reinterpret_cast<uintptr_t>(p.kv) % 16 != 0)
    fail(ErrorCode::unsupported, "cuda narrow kernel: kv_cache strides must be multiples of 16 bytes, data 16-byte aligned");
  (void)kv_blocks;  // pages are addressed through the block table alone
  const void* fn = kernel_for(elem, p.kv_read);
  DecodeParams params = p;
  ScheduleLayout sched = layout;
  void* args[] = {&params, &sched};
  // A plain launch: the scheduler has completed when this grid starts (the combine relies on it).
  check(cudaLaunchKernel(fn, dim3(grid), dim3(kThreads), args, kSmemBytes, stream), "narrow_decode_kernel launch");
}

}  // namespace mla::cuda::hopper_narrow
