// The narrow Hopper decode kernel: keys on the wgmma M dimension, 8-bit KV dequantized in
// registers (shapes, formats, roles, tile sizes and orders: narrow_config.cuh). Persistent: CTA k walks the
// splits [cta_first[k], cta_first[k + 1]) of the Hopper kernel's device-side schedule (one CTA per
// piece).
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
#include "narrow_smem.cuh"

namespace mla::cuda::hopper_narrow {
namespace {

using hopper::desc_plus;
using hopper::fast_exp2;
using hopper::fence_async_smem;
using hopper::fence_regs;
using hopper::ld_shared_f32;
using hopper::mbar_init;
using hopper::named_sync;
using hopper::smem_desc;
using portable::KvRead;

// Set to true only after scripts/gpu_check.sh passed with this kernel selected.
constexpr bool kVerified = true;

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
// K consecutive 32-bit words of shared memory (K = 4 or 2: one 16- or 8-byte load).
template <int K>
struct Words {
  uint32_t w[K];
};
template <int K>
__device__ __forceinline__ Words<K> load_words(uint32_t addr) {
  Words<K> v;
  if constexpr (K == 4) {
    const uint4 x = lds128(addr);
    v = Words<K>{{x.x, x.y, x.z, x.w}};
  } else {
    static_assert(K == 2, "8- or 16-byte chunks");
    asm volatile("ld.shared.v2.u32 {%0, %1}, [%2];\n" : "=r"(v.w[0]), "=r"(v.w[1]) : "r"(addr));
  }
  return v;
}

// The warps' values of column lane % kCols (col_max[n][w]) reduced by `op` (one or two 16-byte
// loads); a thread then takes its columns from those lanes by shuffles. At N = 32: 2 loads, 7
// FMNMX and 8 shuffles per thread and step instead of 64 loads and 56 FMNMX (the same time;
// docs/perf/h200.md, v10.2).
template <class S, class Op>
__device__ __forceinline__ float reduce_column_of_lane(const NarrowSmem<S>& sm, int lane, Op op) {
  const uint32_t addr = sm.col_max_addr + (lane % S::kCols) * S::kWarps * 4;
  const uint4 a = lds128(addr);
  float r = op(op(__uint_as_float(a.x), __uint_as_float(a.y)), op(__uint_as_float(a.z), __uint_as_float(a.w)));
  if constexpr (S::kWarps == 8) {
    const uint4 b = lds128(addr + 16);
    r = op(r, op(op(__uint_as_float(b.x), __uint_as_float(b.y)), op(__uint_as_float(b.z), __uint_as_float(b.w))));
  }
  return r;
}
struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct SumOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};

// Q^T of the item's sequence in fp16, in S^T's K order (qt_offset), each row times 2^(14 - e_n)
// so its largest magnitude (times int8's per-channel scales) sits in [2^14, 2^15): no overflow,
// fp16's 11 bits for every value above 2^-28 of the row's largest. col_scale[n] gets the softmax
// scale (log2 domain) times 2^(e_n - 14). Warp w of the CTA builds rows w, w + kWarps, ...; rows
// past the sequence's query rows are zeros, and so are dims 576..639 of the 8-bit formats.
// fp8_ds_mla: the rope dims are T (the query's type, exact under the power of two) in their own
// order in box 8 (qt_rope16_offset); box 9 is neither written nor read.
template <class S, typename T>
__device__ void build_qt(const NarrowSmem<S>& sm, const DecodeParams& p, const SplitEntry& e, float scale_log2, int warp,
                         int lane) {
  constexpr KvRead R = S::kRead;
  constexpr int kPairs = kInBoxes * kInBoxCols / 2;  // 320 (288 real)
  constexpr int kPerLane = kPairs / 32;              // 10
  for (int n = warp; n < S::kCols; n += S::kWarps) {
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
      if constexpr (S::kGroupScales) {
        if (d >= kDqk) continue;  // box 9 is not read; box 8 holds the rope in its own order
        if (d >= kDv) {
          const uint32_t pair = portable::Mma<T>::pack(v[i][0] * f, v[i][1] * f);
          *reinterpret_cast<uint32_t*>(sm.qt_ptr + qt_rope16_offset(n, d - kDv, S::kQBoxBytes)) = pair;
          continue;
        }
      }
      const __half2 h = __floats2half2_rn(v[i][0] * f, v[i][1] * f);
      *reinterpret_cast<__half2*>(sm.qt_ptr + qt_offset(n, d, S::kQBoxBytes)) = h;
    }
    if (lane == 0) sm.col_scale[n] = scale_log2 * __uint_as_float(static_cast<uint32_t>(127 - 14 + ex) << 23);
  }
}

// kSteps k-steps of S^T (Q^T's k-steps kq0 ..), in wgmma groups of kGroup, A of type TA from
// fill(a, k) for k-step k; a group's fragments alternate between the two buffers of `frag` by
// the running group count gi0 + h (a compile-time constant once unrolled), so two groups are in
// flight.
template <class S, typename TA, int kSteps, int kGroup, class Fill>
__device__ __forceinline__ void st_groups(float (&st)[S::kCols / 2], uint32_t (&frag)[2][kGroup][4], uint64_t qt_desc,
                                          int kq0, int gi0, Fill&& fill) {
#pragma unroll
  for (int h = 0; h < kSteps / kGroup; ++h) {
    uint32_t(&a)[kGroup][4] = frag[(gi0 + h) % 2];
    if (gi0 + h >= 2) {
      hopper::wgmma_wait<1>();  // the group that read these registers is done
#pragma unroll
      for (int k = 0; k < kGroup; ++k) fence_regs(a[k]);
    }
#pragma unroll
    for (int k = 0; k < kGroup; ++k) fill(a[k], h * kGroup + k);
    hopper::wgmma_fence();
#pragma unroll
    for (int k = 0; k < kGroup; ++k) {
      const int kq = kq0 + h * kGroup + k;
      hopper::wgmma_m64nk16_rs<TA, S::kCols>(st, a[k], desc_plus(qt_desc, (kq / 4) * S::kQBoxBytes + (kq % 4) * 32),
                                             kq != 0);
    }
    hopper::wgmma_commit();
  }
}

// S^T = K Q^T of the page in `stage` (64 keys x N rows, fp32), A fragments dequantized from the
// page box by box (fp8_ds_mla: times the keys' group scales; its rope box bf16 as stored, TQ the
// query's type). Keys at or past `valid` (the sequence's end) read as 0: their bytes may be
// anything, NaN included.
template <class S, typename TQ>
__device__ __forceinline__ void compute_st(float (&st)[S::kCols / 2], uint32_t stage, uint64_t qt_desc, int ka, int kb,
                                           int c, int valid) {
  constexpr KvRead R = S::kRead;
  constexpr int TB = S::kTokenBytes;
  // kGroup k-steps (4 x kGroup registers) per wgmma group, two groups in flight: half a box at
  // N = 16, a quarter at N = 32 (whose larger accumulators leave fewer registers).
  constexpr int kGroup = S::kCols == 16 ? 4 : 2;  // 4 at N = 32: the same time, 255 registers
  constexpr int kGroups = kKStepsPerBox / kGroup;
  const bool last_page = valid < kBlockN;  // the sequence's last page (warp-uniform): no selects elsewhere
  uint32_t frag[2][kGroup][4];
  // The 8-bit formats' rope box is the loop's last: chunks 4-7 of its row are dims 576-639, zeros
  // (not read). fp8_ds_mla's bf16 rope box follows the loop.
  constexpr int kByteBoxes = S::kGroupScales ? kInBoxes - 1 : kInBoxes;
#pragma unroll
  for (int G = 0; G < kByteBoxes; ++G) {
    const bool rope = G == kInBoxes - 1;  // known at compile time (unrolled)
    uint4 ra = lds128(stage + page_chunk<TB>(ka, G, c)), rb = lds128(stage + page_chunk<TB>(kb, G, c));
    uint4 ra4 = rope ? make_uint4(0, 0, 0, 0) : lds128(stage + page_chunk<TB>(ka, G, c + 4));
    uint4 rb4 = rope ? make_uint4(0, 0, 0, 0) : lds128(stage + page_chunk<TB>(kb, G, c + 4));
    float sa = 1.f, sb = 1.f;
    if constexpr (S::kGroupScales) {
      sa = ld_shared_f32(stage + ka * TB + S::kScaleOffset + 4 * G);
      sb = ld_shared_f32(stage + kb * TB + S::kScaleOffset + 4 * G);
    }
    // The previous page's P V products may still run: the first box's bytes are read meanwhile,
    // but nothing that feeds a wgmma is written before they are done (ptxas would otherwise
    // serialise every wgmma of the kernel: C7513).
    if (G == 0) hopper::wgmma_wait<0>();
    if (last_page) {
      if (ka >= valid) ra = ra4 = make_uint4(0, 0, 0, 0), sa = 0.f;
      if (kb >= valid) rb = rb4 = make_uint4(0, 0, 0, 0), sb = 0.f;
    }
    const __half2 ha = __float2half2_rn(sa), hb = __float2half2_rn(sb);
    st_groups<S, __half, kKStepsPerBox, kGroup>(st, frag, qt_desc, G * kKStepsPerBox, G * kGroups,
                                                [&](uint32_t(&a)[4], int kk) {
                                                  a[0] = pair_to_f16x2<R>(word_of(ra, kk / 2), kk & 1);
                                                  a[1] = pair_to_f16x2<R>(word_of(rb, kk / 2), kk & 1);
                                                  a[2] = pair_to_f16x2<R>(word_of(ra4, kk / 2), kk & 1);
                                                  a[3] = pair_to_f16x2<R>(word_of(rb4, kk / 2), kk & 1);
                                                  if constexpr (S::kGroupScales) {
                                                    a[0] = portable::scale_f16x2(a[0], ha);
                                                    a[1] = portable::scale_f16x2(a[1], hb);
                                                    a[2] = portable::scale_f16x2(a[2], ha);
                                                    a[3] = portable::scale_f16x2(a[3], hb);
                                                  }
                                                });
  }
  if constexpr (S::kGroupScales) {
    // The rope box: bf16, chunks c and c + 4 of the key's rope (k-step kk: word kk of each;
    // qt_rope16_offset).
    constexpr int kRopeQ = (kInBoxes - 1) * kKStepsPerBox, kRopeGroup = (kInBoxes - 1) * kGroups;
    const uint32_t rope = stage + S::kRopeOffset + 16 * c;
    uint4 ra = lds128(rope + ka * TB), ra_hi = lds128(rope + ka * TB + 64);
    uint4 rb = lds128(rope + kb * TB), rb_hi = lds128(rope + kb * TB + 64);
    if (last_page) {
      if (ka >= valid) ra = ra_hi = make_uint4(0, 0, 0, 0);
      if (kb >= valid) rb = rb_hi = make_uint4(0, 0, 0, 0);
    }
    constexpr bool kBf16 = !std::is_same_v<TQ, __half>;
    auto as_tq = [](uint32_t w) { return kBf16 ? w : portable::bf16x2_to<__half>(w); };
    st_groups<S, TQ, S::kRope16KSteps, kGroup>(st, frag, qt_desc, kRopeQ, kRopeGroup, [&](uint32_t(&a)[4], int kk) {
      a[0] = as_tq(word_of(ra, kk));
      a[1] = as_tq(word_of(rb, kk));
      a[2] = as_tq(word_of(ra_hi, kk));
      a[3] = as_tq(word_of(rb_hi, kk));
    });
  }
  hopper::wgmma_wait<0>();
  fence_regs(st);
#pragma unroll
  for (int b = 0; b < 2; ++b)
#pragma unroll
    for (int k = 0; k < kGroup; ++k) fence_regs(frag[b][k]);
}

// O^T += V^T P^T of the page in `stage` (P^T's box of that page at `pt_desc`): k-step kk covers
// keys 16 kk + [0, 16); the thread's fragments are keys 16 kk + 2 c, + 1, + 8, + 9 of its
// kDimsPerThread dims at byte `dim0` of a token row (one 16- or 8-byte chunk per key), paired key
// by key (byte_perm) and dequantized (fp8_ds_mla: times the keys' scales of the dims' group, at
// byte `scale0` of a token row). `first`: no product of this page pair was issued yet (the
// fragments' previous readers are done). Returns once the page's bytes are all read (the wgmma
// may still run).
template <class S>
__device__ __forceinline__ void issue_pv(float (&o)[S::kMTiles][S::kCols / 2], uint32_t stage, uint64_t pt_desc, int dim0,
                                         int scale0, int c, int valid, bool first,
                                         uint32_t (&frag)[2][S::kMTiles / 2][4]) {
  constexpr KvRead R = S::kRead;
  constexpr int TB = S::kTokenBytes;
  constexpr int kWords = S::kDimsPerThread / 4;  // one per pair of m-tiles
#pragma unroll
  for (int kk = 0; kk < kBlockN / 16; ++kk) {
    // K-index j of the k-step holds key 16 kk + pv_key(j): keys 2c, 2c + 1, 2c + 8, 2c + 9 of the
    // k-step, for 576-byte tokens the pair swapped for odd c (bank groups, narrow_layout.hpp).
    const int k0 = 16 * kk + pv_key<TB>(2 * c), k1 = 16 * kk + pv_key<TB>(2 * c + 1);
    Words<kWords> x0 = load_words<kWords>(stage + k0 * TB + dim0), x1 = load_words<kWords>(stage + k1 * TB + dim0);
    Words<kWords> x2 = load_words<kWords>(stage + (k0 + 8) * TB + dim0);
    Words<kWords> x3 = load_words<kWords>(stage + (k1 + 8) * TB + dim0);
    float s0 = 1.f, s1 = 1.f, s2 = 1.f, s3 = 1.f;
    if constexpr (S::kGroupScales) {
      s0 = ld_shared_f32(stage + k0 * TB + scale0);
      s1 = ld_shared_f32(stage + k1 * TB + scale0);
      s2 = ld_shared_f32(stage + (k0 + 8) * TB + scale0);
      s3 = ld_shared_f32(stage + (k1 + 8) * TB + scale0);
    }
    if (valid < kBlockN) {
      if (k0 >= valid) x0 = Words<kWords>{}, s0 = 0.f;
      if (k1 >= valid) x1 = Words<kWords>{}, s1 = 0.f;
      if (k0 + 8 >= valid) x2 = Words<kWords>{}, s2 = 0.f;
      if (k1 + 8 >= valid) x3 = Words<kWords>{}, s3 = 0.f;
    }
    // The pairs below are (key k0, key k1) and (k0 + 8, k1 + 8).
    const __half2 h01 = __floats2half2_rn(s0, s1), h23 = __floats2half2_rn(s2, s3);
    // Half the m-tiles per wgmma group: group h takes words h kWords / 2 .. (h + 1) kWords / 2 - 1
    // of each key's chunk.
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      uint32_t(&a)[S::kMTiles / 2][4] = frag[h];
      if (kk > 0 || !first) {
        hopper::wgmma_wait<1>();
#pragma unroll
        for (int t = 0; t < S::kMTiles / 2; ++t) fence_regs(a[t]);
      }
#pragma unroll
      for (int w2 = 0; w2 < kWords / 2; ++w2) {
        const int i = h * (kWords / 2) + w2;
        const uint32_t lo01 = __byte_perm(x0.w[i], x1.w[i], 0x5140);
        const uint32_t hi01 = __byte_perm(x0.w[i], x1.w[i], 0x7362);
        const uint32_t lo23 = __byte_perm(x2.w[i], x3.w[i], 0x5140);
        const uint32_t hi23 = __byte_perm(x2.w[i], x3.w[i], 0x7362);
        a[2 * w2][0] = pair_to_f16x2<R>(lo01, 0);
        a[2 * w2][1] = pair_to_f16x2<R>(lo01, 1);
        a[2 * w2][2] = pair_to_f16x2<R>(lo23, 0);
        a[2 * w2][3] = pair_to_f16x2<R>(lo23, 1);
        a[2 * w2 + 1][0] = pair_to_f16x2<R>(hi01, 0);
        a[2 * w2 + 1][1] = pair_to_f16x2<R>(hi01, 1);
        a[2 * w2 + 1][2] = pair_to_f16x2<R>(hi23, 0);
        a[2 * w2 + 1][3] = pair_to_f16x2<R>(hi23, 1);
        if constexpr (S::kGroupScales) {
#pragma unroll
          for (int t = 0; t < 2; ++t) {
            a[2 * w2 + t][0] = portable::scale_f16x2(a[2 * w2 + t][0], h01);
            a[2 * w2 + t][1] = portable::scale_f16x2(a[2 * w2 + t][1], h01);
            a[2 * w2 + t][2] = portable::scale_f16x2(a[2 * w2 + t][2], h23);
            a[2 * w2 + t][3] = portable::scale_f16x2(a[2 * w2 + t][3], h23);
          }
        }
      }
      hopper::wgmma_fence();
#pragma unroll
      for (int t = 0; t < S::kMTiles / 2; ++t)
        hopper::wgmma_m64nk16_rs<__half, S::kCols>(o[(S::kMTiles / 2) * h + t], a[t], desc_plus(pt_desc, kk * 32), 1);
      hopper::wgmma_commit();
    }
  }
}

// After a wgmma wait: ties O^T and the P V fragments to this point (kept alive and unmoved
// while the asynchronous products may still read or write them).
template <class S>
__device__ __forceinline__ void fence_pv(float (&o)[S::kMTiles][S::kCols / 2], uint32_t (&frag)[2][S::kMTiles / 2][4]) {
#pragma unroll
  for (int t = 0; t < S::kMTiles; ++t) fence_regs(o[t]);
#pragma unroll
  for (int b = 0; b < 2; ++b)
#pragma unroll
    for (int t = 0; t < S::kMTiles / 2; ++t) fence_regs(frag[b][t]);
}

template <class Shape, typename T, KvRead R>
__global__ void __launch_bounds__(Shape::kThreads, Shape::kCtasPerSm)
    narrow_decode_kernel(const DecodeParams p, const ScheduleLayout layout) {
  using S = NarrowKernel<Shape, R>;
  constexpr int W = S::kWarpgroups, kCols = S::kCols;
  constexpr int kColsPerThread = kCols / 4;  // i -> column n = 8 (i / 2) + 2 c + (i % 2)
  // The combine kernel (a programmatic dependent) reads only the scheduler's split counts
  // before it waits for this grid.
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
  extern __shared__ unsigned char smem_raw[];
  const uint32_t raw = smem_u32(smem_raw);
  unsigned char* smem = smem_raw + (((raw + kSmemAlign - 1) & ~uint32_t(kSmemAlign - 1)) - raw);
  const NarrowSmem<S> sm = NarrowSmem<S>::carve(smem);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int wg = W == 1 ? 0 : tid / 128, wwarp = warp % 4;  // this thread's warpgroup, its warp in it
  if (tid == 0) {
    for (int s = 0; s < S::kStages; ++s) {
      mbar_init(sm.full(s), 1);
      mbar_init(sm.empty(s), S::kThreads);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    fence_async_smem();
  }
  __syncthreads();
  const int item_begin = layout.cta_first[blockIdx.x], item_end = layout.cta_first[blockIdx.x + 1];

  // Thread 0 issues the page copies: the ring's first kStages pages now, then at the start of
  // each step (W pages) the W pages after it, each once every thread has read the stage's
  // previous occupant.
  PageLoader loader;
  if (tid == 0) {
    loader.start(p, layout, item_begin, item_end);
    loader.issue_until<kProbe>(sm, S::kStages, p, layout);
  }

  const int g = lane / 4, c = lane % 4;
  // This thread's S^T rows (keys of its warpgroup's page) and their P's K-index in O^T += V^T P^T
  // (pv_key is its own inverse).
  const int ka = st_key<S::kTokenBytes>(wwarp, g), kb = ka + 8;
  const int pa_slot = (ka & ~15) + pv_key<S::kTokenBytes>(ka & 15), pb_slot = (kb & ~15) + pv_key<S::kTokenBytes>(kb & 15);
  const int dim0 = (kDv / W) * wg + (128 / W) * wwarp + S::kDimsPerThread * g;  // this thread's O^T dims
  const int scale0 = S::kScaleOffset + 4 * (dim0 / 128);  // fp8_ds_mla: their group's scale in a token
  const float scale_log2 = R == KvRead::fp8_per_tensor ? p.scale_log2 * __ldg(p.kv_scale) : p.scale_log2;
  const uint64_t qt_desc = smem_desc(sm.qt, 16, 1024), pt_desc = smem_desc(sm.pt, 16, 1024);
  unsigned char* const my_pt = sm.pt_ptr + wg * S::kPBoxBytes;  // P^T of this warpgroup's page
  int uses = 0;  // pages consumed by this CTA so far

  for (int item = item_begin; item < item_end; ++item) {
    const SplitEntry e = layout.entries[item];
    const int n_pages = (e.end - e.begin + kBlockN - 1) / kBlockN;
    named_sync(kBarMath, S::kThreads);  // the previous item's Q^T, scales and sums are read
    build_qt<S, T>(sm, p, e, scale_log2, warp, lane);
    fence_async_smem();
    named_sync(kBarMath, S::kThreads);

    // This thread's columns: their softmax scales and the keys each may see (the split's end, or
    // fewer for a causal query row), held in registers: reading the scales from shared memory in
    // each step cost 8-12% at h_q 16 (docs/perf/h200.md, v10).
    float m[kColsPerThread], l[kColsPerThread], cs_reg[kColsPerThread];
    int limit_reg[kColsPerThread];
    int min_limit = e.end;
#pragma unroll
    for (int i = 0; i < kColsPerThread; ++i) {
      const int n = 8 * (i / 2) + 2 * c + (i & 1);
      const int t = n < p.rows_per_group ? n / p.heads_per_kv : 0;
      limit_reg[i] = min(e.end, visible_keys(e.len, p.s_q, t, p.causal != 0));
      cs_reg[i] = sm.col_scale[n];
      min_limit = min(min_limit, limit_reg[i]);
      m[i] = -INFINITY;
      l[i] = 0.f;
    }
    float o[S::kMTiles][kCols / 2];
    uint32_t pv_frag[2][S::kMTiles / 2][4];  // in flight from one step's P V to the next step's S^T
#pragma unroll
    for (int t = 0; t < S::kMTiles; ++t)
#pragma unroll
      for (int i = 0; i < kCols / 2; ++i) o[t][i] = 0.f;

    // One step: pages u0 .. u0 + n_step - 1 (this warpgroup's S^T on page u0 + wg).
    for (int first_page = 0; first_page < n_pages; first_page += W) {
      // n_step is a constant at W = 1: a run-time one there cost registers and time (v10.0: 226
      // against 200 us at b 128, h_q 16, 8k).
      const int u0 = uses, n_step = W == 1 ? 1 : min(W, n_pages - first_page);
      uses += n_step;
      // Thread 0: the pages after this step's. At W = 1 one page, as v9.2 did it (with the
      // per-thread max below, 1-3% faster at h_q 16 than the general loop: docs/perf/h200.md, v10).
      if constexpr (W == 1) {
        if (tid == 0 && u0 >= 1 && loader.more()) {
          const int next = (u0 + 1) % S::kStages;
          mbar_wait(sm.empty(next), ((u0 - 1) / S::kStages) & 1);
          loader.issue<kProbe>(sm, next, p, layout);
        }
      } else {
        if (tid == 0) loader.issue_until<kProbe>(sm, u0 + n_step + W, p, layout);
      }
      if constexpr (kProbe == 1) {
        for (int q = 0; q < n_step; ++q) {
          mbar_wait(sm.full((u0 + q) % S::kStages), ((u0 + q) / S::kStages) & 1);
          mbar_arrive(sm.empty((u0 + q) % S::kStages));
        }
        continue;
      }
      const bool has_page = W == 1 || wg < n_step;  // warpgroup-uniform (a step has at least one page)
      // A warpgroup without a page (the odd last one of an item) runs S^T on the step's first page
      // with every key invalid (zeros): one code path keeps ptxas from serialising the wgmmas.
      const int mine = has_page ? u0 + wg : u0;
      const int key0 = e.begin + (first_page + wg) * kBlockN, valid = has_page ? e.len - key0 : 0;
      float st[kCols / 2];
      mbar_wait(sm.full(mine % S::kStages), (mine / S::kStages) & 1);
      compute_st<S, T>(st, sm.stage(mine % S::kStages), qt_desc, ka, kb, c, valid);  // also waits for the last P V
      fence_pv<S>(o, pv_frag);  // O^T and the P V fragments are settled: the rescale below may touch O^T

      // ---- column softmax: scale, mask, the step's max over the CTA ----
      float mx[kColsPerThread];
#pragma unroll
      for (int i = 0; i < kColsPerThread; ++i) {
        const int j = i / 2, e2 = i & 1;
        float va = -INFINITY, vb = -INFINITY;
        if (has_page) {
          const float cs = cs_reg[i];
          va = st[4 * j + e2] * cs;
          vb = st[4 * j + 2 + e2] * cs;
          if (key0 + kBlockN > min_limit) {
            const int limit = limit_reg[i];
            if (key0 + ka >= limit) va = -INFINITY;
            if (key0 + kb >= limit) vb = -INFINITY;
          }
        }
        st[4 * j + e2] = va;
        st[4 * j + 2 + e2] = vb;
        mx[i] = fmaxf(va, vb);
#pragma unroll
        for (int off = 4; off < 32; off <<= 1) mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], off));
      }
      if (g == 0)
#pragma unroll
        for (int i = 0; i < kColsPerThread; ++i) sm.col_max[(8 * (i / 2) + 2 * c + (i & 1)) * S::kWarps + warp] = mx[i];
      named_sync(kBarMath, S::kThreads);
      // The step's column maxima over the CTA's warps: at W = 1 each thread reads its columns' 4
      // values; at W = 2 a lane reduces one column's 8 and the threads shuffle theirs from it.
      const float lane_max = W == 1 ? 0.f : reduce_column_of_lane(sm, lane, MaxOp{});
      float alpha[kColsPerThread], base[kColsPerThread];
#pragma unroll
      for (int i = 0; i < kColsPerThread; ++i) {
        float bm;
        if constexpr (W == 1) {
          const int n = 8 * (i / 2) + 2 * c + (i & 1);
          bm = sm.col_max[n * S::kWarps];
#pragma unroll
          for (int w = 1; w < S::kWarps; ++w) bm = fmaxf(bm, sm.col_max[n * S::kWarps + w]);
        } else {
          bm = __shfl_sync(0xffffffffu, lane_max, 8 * (i / 2) + 2 * c + (i & 1));
        }
        const float mn = fmaxf(m[i], bm);
        base[i] = base_of(mn);
        alpha[i] = fast_exp2(m[i] - base[i]);
        m[i] = mn;
      }
      // ---- P = 2^(S - max) into this page's P^T box (fp16, K-major: row n, key k), the row sums,
      // O^T rescaled ----
#pragma unroll
      for (int i = 0; i < kColsPerThread; ++i) {
        const int j = i / 2, e2 = i & 1, n = 8 * j + 2 * c + e2;
        const float pa = fast_exp2(st[4 * j + e2] - base[i]), pb = fast_exp2(st[4 * j + 2 + e2] - base[i]);
        l[i] = l[i] * alpha[i] + pa + pb;
        // Zeros without a page: its P V products still run (on zeroed bytes), and 0 x 0 must not
        // meet a stale NaN.
        *reinterpret_cast<__half*>(my_pt + swz(n, pa_slot / 8) + (pa_slot % 8) * 2) = __float2half_rn(pa);
        *reinterpret_cast<__half*>(my_pt + swz(n, pb_slot / 8) + (pb_slot % 8) * 2) = __float2half_rn(pb);
      }
      bool unchanged = true;
#pragma unroll
      for (int i = 0; i < kColsPerThread; ++i) unchanged = unchanged && alpha[i] == 1.f;
      if (!__all_sync(0xffffffffu, unchanged)) {
#pragma unroll
        for (int t = 0; t < S::kMTiles; ++t)
#pragma unroll
          for (int i = 0; i < kCols / 2; ++i) o[t][i] *= alpha[2 * (i / 4) + (i & 1)];
      }
      fence_async_smem();
      named_sync(kBarMath, S::kThreads);  // P^T complete (and every column max read)

      // ---- O^T (this warpgroup's dims) += V^T P^T over the step's W page slots ----
      // A slot without a page (the odd last one of an item) runs on the step's first page with
      // every key zeroed (valid = 0): a fixed loop, no run-time trip count (which cost registers).
      // Not on its own stage, which a later page's copy may be filling.
#pragma unroll
      for (int q = 0; q < W; ++q) {
        const int u = u0 + q;
        const bool real = q < n_step;
        if (q != wg && real) mbar_wait(sm.full(u % S::kStages), (u / S::kStages) & 1);  // another warpgroup waited
        const int valid_q = real ? e.len - (e.begin + (first_page + q) * kBlockN) : 0;
        issue_pv<S>(o, sm.stage((real ? u : u0) % S::kStages), desc_plus(pt_desc, q * S::kPBoxBytes), dim0, scale0, c,
                    valid_q, q == 0, pv_frag);
      }
#pragma unroll
      for (int q = 0; q < W; ++q)
        if (q < n_step) mbar_arrive(sm.empty((u0 + q) % S::kStages));  // the pages' bytes are all read
      // No wait here: these P V products run while the next step's S^T fragments are read and
      // converted (compute_st waits for them with its own).
    }
    hopper::wgmma_wait<0>();
    fence_pv<S>(o, pv_frag);

    // ---- epilogue: the column sums over the CTA, then out + lse or the split's partial ----
#pragma unroll
    for (int i = 0; i < kColsPerThread; ++i)
#pragma unroll
      for (int off = 4; off < 32; off <<= 1) l[i] += __shfl_xor_sync(0xffffffffu, l[i], off);
    named_sync(kBarMath, S::kThreads);  // every column max of the last step is read
    if (g == 0)
#pragma unroll
      for (int i = 0; i < kColsPerThread; ++i) sm.col_max[(8 * (i / 2) + 2 * c + (i & 1)) * S::kWarps + warp] = l[i];
    named_sync(kBarMath, S::kThreads);
    const float lane_sum = reduce_column_of_lane(sm, lane, SumOp{});
#pragma unroll
    for (int i = 0; i < kColsPerThread; ++i) {
      const int j = i / 2, e2 = i & 1, n = 8 * j + 2 * c + e2;
      const float sum = __shfl_sync(0xffffffffu, lane_sum, n);
      if (n >= p.rows_per_group) continue;
      const int t = n / p.heads_per_kv, head = n % p.heads_per_kv;
      const bool none = !(sum > 0.f);
      const float inv = none ? 0.f : 1.f / sum;
      const float lse = none ? INFINITY : (m[i] + log2f(sum)) * 0.69314718055994530942f;
      // Dim dim0 + jj is m-tile 2 (jj / 4) + (jj / 2) % 2, row g (+ 8 when jj is odd).
      constexpr int kD = S::kDimsPerThread;
      float v[kD];
#pragma unroll
      for (int jj = 0; jj < kD; ++jj) {
        const int mt = 2 * (jj / 4) + (jj / 2) % 2;
        float scale = inv;
        if constexpr (R == KvRead::fp8_per_tensor) scale *= __ldg(p.kv_scale);
        else if constexpr (R == KvRead::int8_per_channel) scale *= __ldg(p.kv_scale + dim0 + jj);
        v[jj] = o[mt][4 * j + 2 * (jj % 2) + e2] * scale;
      }
      if (e.slot < 0) {
        T* out = static_cast<T*>(p.out) + e.seq * p.out_stride_b + t * p.out_stride_t + head * p.out_stride_h + dim0;
        uint32_t packed[kD / 2];
#pragma unroll
        for (int k = 0; k < kD / 2; ++k) packed[k] = portable::Mma<T>::pack(v[2 * k], v[2 * k + 1]);
#pragma unroll
        for (int k = 0; k < kD / 8; ++k)
          reinterpret_cast<uint4*>(out)[k] = make_uint4(packed[4 * k], packed[4 * k + 1], packed[4 * k + 2], packed[4 * k + 3]);
        if (warp == 0 && g == 0) p.lse[e.seq * p.lse_stride_b + head * p.lse_stride_h + t * p.lse_stride_t] = lse;
      } else {
        const int prow = t * p.h_q + head;
        const int64_t rows_per_seq = static_cast<int64_t>(p.s_q) * p.h_q;
        float4* out = reinterpret_cast<float4*>(layout.partial_out + (e.slot * rows_per_seq + prow) * kDv + dim0);
#pragma unroll
        for (int k = 0; k < kD / 4; ++k) out[k] = make_float4(v[4 * k], v[4 * k + 1], v[4 * k + 2], v[4 * k + 3]);
        if (warp == 0 && g == 0) layout.partial_lse[e.slot * rows_per_seq + prow] = none ? -INFINITY : lse;
      }
    }
  }
}

template <class Shape, KvRead R>
const void* kernel_for(portable::Elem elem) {
  if (elem == portable::Elem::fp16) return reinterpret_cast<const void*>(&narrow_decode_kernel<Shape, __half, R>);
  return reinterpret_cast<const void*>(&narrow_decode_kernel<Shape, __nv_bfloat16, R>);
}

// Calls f(NarrowKernel<Shape, R>{}) for the cache format `r` (one of the three 8-bit reads).
template <class Shape, class F>
auto with_format(KvRead r, F&& f) {
  if (r == KvRead::int8_per_channel) return f(NarrowKernel<Shape, KvRead::int8_per_channel>{});
  if (r == KvRead::fp8_ds_mla) return f(NarrowKernel<Shape, KvRead::fp8_ds_mla>{});
  return f(NarrowKernel<Shape, KvRead::fp8_per_tensor>{});
}

// Calls f(S{}) with the shape that takes `rows` query rows per sequence.
template <class F>
auto with_shape(int rows, F&& f) {
  if (rows > 16) return f(NarrowShape<2, 32>{});
  return f(NarrowShape<1, 16>{});
}

}  // namespace

bool verified() { return kVerified; }
int max_rows() { return 32; }
int columns(int rows) {
  return with_shape(rows, [](auto s) { return decltype(s)::kCols; });
}
int warpgroups(int rows) {
  return with_shape(rows, [](auto s) { return decltype(s)::kWarpgroups; });
}
int threads_per_cta(int rows) {
  return with_shape(rows, [](auto s) { return decltype(s)::kThreads; });
}
size_t smem_bytes(int rows, KvRead read) {
  return with_shape(rows, [&](auto shape) {
    return with_format<decltype(shape)>(read, [](auto k) { return decltype(k)::kSmemBytes; });
  });
}

int prepare(int rows, KvRead read) {
  return with_shape(rows, [&](auto shape) {
    using Shape = decltype(shape);
    return with_format<Shape>(read, [](auto k) {
      using K = decltype(k);
      const std::vector<const void*> kernels = {kernel_for<Shape, K::kRead>(portable::Elem::bf16),
                                                kernel_for<Shape, K::kRead>(portable::Elem::fp16)};
      return hopper::prepare_kernels(kernels, K::kThreads, K::kSmemBytes, "narrow_decode_kernel");
    });
  });
}

bool reads(KvRead read) {
  return read == KvRead::fp8_per_tensor || read == KvRead::int8_per_channel || read == KvRead::fp8_ds_mla;
}

void launch_decode(portable::Elem elem, int grid, const DecodeParams& p, int64_t kv_blocks, const ScheduleLayout& layout,
                   cudaStream_t stream) {
  if (p.page_size != kBlockN || p.h_kv != 1 || p.rows_per_group > max_rows())
    fail(ErrorCode::unsupported, "cuda narrow kernel: needs page size 64, h_kv = 1 and s_q x h_q <= 32");
  if (!reads(p.kv_read))
    fail(ErrorCode::unsupported, "cuda narrow kernel: reads the fp8_e4m3, int8 and fp8_ds_mla caches only");
  if (p.kv_stride_token % 16 != 0 || p.kv_stride_block % 16 != 0 || reinterpret_cast<uintptr_t>(p.kv) % 16 != 0)
    fail(ErrorCode::unsupported, "cuda narrow kernel: kv_cache strides must be multiples of 16 bytes, data 16-byte aligned");
  (void)kv_blocks;  // pages are addressed through the block table alone
  with_shape(p.rows_per_group, [&](auto shape) {
    using Shape = decltype(shape);
    return with_format<Shape>(p.kv_read, [&](auto k) {
      using K = decltype(k);
      const void* fn = kernel_for<Shape, K::kRead>(elem);
      DecodeParams params = p;
      ScheduleLayout sched = layout;
      void* args[] = {&params, &sched};
      // A plain launch: the scheduler has completed when this grid starts (the combine relies on it).
      check(cudaLaunchKernel(fn, dim3(grid), dim3(K::kThreads), args, K::kSmemBytes, stream),
            "narrow_decode_kernel launch");
      return 0;
    });
  });
}

}  // namespace mla::cuda::hopper_narrow
