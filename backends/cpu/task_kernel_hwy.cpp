// The cpu fast path's task kernel written once over Highway and compiled for every SIMD target
// Highway knows on this architecture (foreach_target: EMU128, SSE4, AVX2, AVX3 on x86; NEON,
// SVE, SVE2 on ARM). simd_targets.cpp picks one at run time.
//
// Every tile of keys is widened to fp32 once (every KV format shares one path: plain formats are
// widened, quantized ones dequantized by widen-inl.h; the cost is amortised over every query row
// of the task). A per-tensor or per-channel kv_scale is not applied to the keys but folded into
// the queries (q_c * s_c) and the output (out_c * s_c); fp8_ds_mla's in-token scales differ per
// token and are applied while dequantizing. Then:
//   many rows (>= one vector):  S^T[key][m] = sum_k Q^T[k][m] * K[key][k], query rows along the
//       lanes, one key element broadcast per FMA (the same layout as the AVX-512 BF16 kernel);
//   few rows (< one vector):    each score is a dot product along the head dimension, vectors
//       filled from the key rows, so no lane is wasted on missing heads; a bf16 cache read by
//       bf16 queries is then read straight from the cache (no widened tile);
//   P.V:                        O[m][d] += P[key][m] * V[key][d], vectors along d.
// Vectors live in named variables, never arrays: SVE vectors are sizeless and cannot be.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "task_kernel_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep

#include <hwy/cache_control.h>
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "mla/half.hpp"
#include "mla/simd/widen-inl.h"
#include "task_kernel.hpp"

HWY_BEFORE_NAMESPACE();
namespace mla::cpu {
namespace HWY_NAMESPACE {
namespace {

namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using DI = hn::RebindToSigned<DF>;
using VF = hn::Vec<DF>;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Register tiles are sized to the register file: 16 vector registers on SSE4 / AVX2 (and the
// emulated fallback), 32 on AVX-512, NEON and SVE.
#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_SSSE3 || HWY_TARGET == HWY_EMU128 || \
    HWY_TARGET == HWY_SCALAR
constexpr int kVecRegs = 16;
#else
constexpr int kVecRegs = 32;
#endif

// Score tile: keys (T) x row-vectors (V), accumulators T*V plus V query loads and a broadcast.
constexpr int kMaxRowVecs = 3;
constexpr int keys_per_step(int vecs) {
  if (kVecRegs == 16) return vecs == 1 ? 8 : vecs == 2 ? 6 : 4;
  return vecs == 1 ? 8 : vecs == 2 ? 8 : 7;
}
// P.V tile: rows (R) x column-vectors (C).
constexpr int kPvRows = 6;
constexpr int kPvCols = kVecRegs == 16 ? 2 : 4;

size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

using mla::HWY_NAMESPACE::dequantize_token_f32;
using mla::HWY_NAMESPACE::widen_to_f32;

// x[i] *= factor[i] for i < n.
void multiply_in_place(float* HWY_RESTRICT x, const float* HWY_RESTRICT factor, size_t n) {
  const DF df;
  const size_t N = hn::Lanes(df);
  size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::Mul(hn::LoadU(df, x + i), hn::LoadU(df, factor + i)), df, x + i);
  for (; i < n; ++i) x[i] *= factor[i];
}

// S^T[t][m0 .. m0 + V*N) for T keys: T x V accumulators, each query vector reused by T keys.
template <int T, int V>
HWY_INLINE void score_keys(const float* HWY_RESTRICT qT, size_t m_stride, int d, const float* const* keys,
                           float* HWY_RESTRICT S, size_t s_stride) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const VF z = hn::Zero(df);
  VF a00 = z, a01 = z, a02 = z, a10 = z, a11 = z, a12 = z, a20 = z, a21 = z, a22 = z, a30 = z, a31 = z, a32 = z;
  VF a40 = z, a41 = z, a42 = z, a50 = z, a51 = z, a52 = z, a60 = z, a61 = z, a62 = z, a70 = z, a71 = z, a72 = z;
  for (int k = 0; k < d; ++k) {
    const float* q = qT + static_cast<size_t>(k) * m_stride;
    const VF q0 = hn::LoadU(df, q);
    const VF q1 = V > 1 ? hn::LoadU(df, q + N) : z;
    const VF q2 = V > 2 ? hn::LoadU(df, q + 2 * N) : z;
#define MLA_SCORE_KEY(t)                                      \
  if constexpr (T > t) {                                      \
    const VF b = hn::Set(df, keys[t][k]);                     \
    a##t##0 = hn::MulAdd(q0, b, a##t##0);                     \
    if constexpr (V > 1) a##t##1 = hn::MulAdd(q1, b, a##t##1); \
    if constexpr (V > 2) a##t##2 = hn::MulAdd(q2, b, a##t##2); \
  }
    MLA_SCORE_KEY(0) MLA_SCORE_KEY(1) MLA_SCORE_KEY(2) MLA_SCORE_KEY(3)
    MLA_SCORE_KEY(4) MLA_SCORE_KEY(5) MLA_SCORE_KEY(6) MLA_SCORE_KEY(7)
#undef MLA_SCORE_KEY
  }
#define MLA_SCORE_STORE(t)                                        \
  if constexpr (T > t) {                                          \
    float* s = S + static_cast<size_t>(t) * s_stride;             \
    hn::StoreU(a##t##0, df, s);                                   \
    if constexpr (V > 1) hn::StoreU(a##t##1, df, s + N);          \
    if constexpr (V > 2) hn::StoreU(a##t##2, df, s + 2 * N);      \
  }
  MLA_SCORE_STORE(0) MLA_SCORE_STORE(1) MLA_SCORE_STORE(2) MLA_SCORE_STORE(3)
  MLA_SCORE_STORE(4) MLA_SCORE_STORE(5) MLA_SCORE_STORE(6) MLA_SCORE_STORE(7)
#undef MLA_SCORE_STORE
}

template <int V>
void score_rows_in_lanes(const float* qT, size_t m_stride, int d, const float* const* keys, int n, float* S,
                         size_t s_stride) {
  constexpr int T = keys_per_step(V);
  int j = 0;
  for (; j + T <= n; j += T) score_keys<T, V>(qT, m_stride, d, keys + j, S + static_cast<size_t>(j) * s_stride, s_stride);
  const float* const* kr = keys + j;
  float* sr = S + static_cast<size_t>(j) * s_stride;
  switch (n - j) {  // the tile's last keys, fewer than T
    case 7: score_keys<7, V>(qT, m_stride, d, kr, sr, s_stride); break;
    case 6: score_keys<6, V>(qT, m_stride, d, kr, sr, s_stride); break;
    case 5: score_keys<5, V>(qT, m_stride, d, kr, sr, s_stride); break;
    case 4: score_keys<4, V>(qT, m_stride, d, kr, sr, s_stride); break;
    case 3: score_keys<3, V>(qT, m_stride, d, kr, sr, s_stride); break;
    case 2: score_keys<2, V>(qT, m_stride, d, kr, sr, s_stride); break;
    case 1: score_keys<1, V>(qT, m_stride, d, kr, sr, s_stride); break;
    default: break;
  }
}

// Few rows: S^T[j][r] = <q_r, k_j>, R rows x 4 keys of dot products along the (padded) head
// dimension, so every lane holds real data whatever the number of heads.
template <int R>
void score_few_rows(const float* HWY_RESTRICT q, size_t ld, int rows, const float* const* keys, int n,
                    float* HWY_RESTRICT S, size_t s_stride) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const VF z = hn::Zero(df);
  for (int r = 0; r + R <= rows; r += R) {
    const float* q0 = q + static_cast<size_t>(r) * ld;
    const float* q1 = R > 1 ? q0 + ld : q0;
    int j = 0;
    for (; j + 4 <= n; j += 4) {
      VF a0 = z, a1 = z, a2 = z, a3 = z, b0 = z, b1 = z, b2 = z, b3 = z;
      for (size_t x = 0; x < ld; x += N) {
        const VF k0 = hn::LoadU(df, keys[j] + x), k1 = hn::LoadU(df, keys[j + 1] + x);
        const VF k2 = hn::LoadU(df, keys[j + 2] + x), k3 = hn::LoadU(df, keys[j + 3] + x);
        const VF x0 = hn::LoadU(df, q0 + x);
        a0 = hn::MulAdd(x0, k0, a0);
        a1 = hn::MulAdd(x0, k1, a1);
        a2 = hn::MulAdd(x0, k2, a2);
        a3 = hn::MulAdd(x0, k3, a3);
        if constexpr (R > 1) {
          const VF x1 = hn::LoadU(df, q1 + x);
          b0 = hn::MulAdd(x1, k0, b0);
          b1 = hn::MulAdd(x1, k1, b1);
          b2 = hn::MulAdd(x1, k2, b2);
          b3 = hn::MulAdd(x1, k3, b3);
        }
      }
      float* s = S + static_cast<size_t>(j) * s_stride + r;
      s[0] = hn::GetLane(hn::SumOfLanes(df, a0));
      s[s_stride] = hn::GetLane(hn::SumOfLanes(df, a1));
      s[2 * s_stride] = hn::GetLane(hn::SumOfLanes(df, a2));
      s[3 * s_stride] = hn::GetLane(hn::SumOfLanes(df, a3));
      if constexpr (R > 1) {
        s[1] = hn::GetLane(hn::SumOfLanes(df, b0));
        s[s_stride + 1] = hn::GetLane(hn::SumOfLanes(df, b1));
        s[2 * s_stride + 1] = hn::GetLane(hn::SumOfLanes(df, b2));
        s[3 * s_stride + 1] = hn::GetLane(hn::SumOfLanes(df, b3));
      }
    }
    for (; j < n; ++j) {
      VF a0 = z, b0 = z;
      for (size_t x = 0; x < ld; x += N) {
        const VF k0 = hn::LoadU(df, keys[j] + x);
        a0 = hn::MulAdd(hn::LoadU(df, q0 + x), k0, a0);
        if constexpr (R > 1) b0 = hn::MulAdd(hn::LoadU(df, q1 + x), k0, b0);
      }
      S[static_cast<size_t>(j) * s_stride + r] = hn::GetLane(hn::SumOfLanes(df, a0));
      if constexpr (R > 1) S[static_cast<size_t>(j) * s_stride + r + 1] = hn::GetLane(hn::SumOfLanes(df, b0));
    }
  }
}

// N values as fp32: widened tiles are already fp32; bf16 rows (raw bits) are widened here.
HWY_INLINE VF load_f32(DF df, const float* p) { return hn::LoadU(df, p); }
HWY_INLINE VF load_f32(DF df, const uint16_t* p) {
  const hn::Rebind<hwy::bfloat16_t, DF> dh;
  return hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::bfloat16_t*>(p)));
}

// Few rows of bf16: the same dot products straight from the cache rows, without widening the
// tile first (for one or two heads the widening pass, not the arithmetic, would be the cost).
// ReorderWidenMulAccumulate multiplies bf16 pairs into two fp32 sums per key. The one-lane
// scalar fallback has no bf16 pairs; it widens the tile like the other dtypes.
#if HWY_TARGET == HWY_SCALAR
constexpr bool kDirectBf16 = false;
void score_few_rows_bf16(const uint16_t* const*, int, int, const uint16_t* const*, int, float*, size_t) {}
#else
constexpr bool kDirectBf16 = true;
void score_few_rows_bf16(const uint16_t* const* q, int rows, int d, const uint16_t* const* keys, int n, float* S,
                         size_t s_stride) {
  const DF df;
  const hn::Repartition<hwy::bfloat16_t, DF> dh;
  const int NH = static_cast<int>(hn::Lanes(dh));
  const int full = d / NH * NH;
  const VF z = hn::Zero(df);
  auto ld = [&](const uint16_t* p) { return hn::LoadU(dh, reinterpret_cast<const hwy::bfloat16_t*>(p)); };
  auto tail = [&](const uint16_t* x, const uint16_t* y) {
    float t = 0;
    for (int i = full; i < d; ++i) t += bf16_to_float(x[i]) * bf16_to_float(y[i]);
    return t;
  };
  for (int r = 0; r < rows; ++r) {
    const uint16_t* qr = q[r];
    int j = 0;
    for (; j + 4 <= n; j += 4) {
      VF a0 = z, a1 = z, a2 = z, a3 = z, b0 = z, b1 = z, b2 = z, b3 = z;
      for (int x = 0; x < full; x += NH) {
        const auto w = ld(qr + x);
        a0 = hn::ReorderWidenMulAccumulate(df, w, ld(keys[j] + x), a0, b0);
        a1 = hn::ReorderWidenMulAccumulate(df, w, ld(keys[j + 1] + x), a1, b1);
        a2 = hn::ReorderWidenMulAccumulate(df, w, ld(keys[j + 2] + x), a2, b2);
        a3 = hn::ReorderWidenMulAccumulate(df, w, ld(keys[j + 3] + x), a3, b3);
      }
      float* s = S + static_cast<size_t>(j) * s_stride + r;
      s[0] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a0, b0))) + tail(qr, keys[j]);
      s[s_stride] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a1, b1))) + tail(qr, keys[j + 1]);
      s[2 * s_stride] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a2, b2))) + tail(qr, keys[j + 2]);
      s[3 * s_stride] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a3, b3))) + tail(qr, keys[j + 3]);
    }
    for (; j < n; ++j) {
      VF a0 = z, b0 = z;
      for (int x = 0; x < full; x += NH) a0 = hn::ReorderWidenMulAccumulate(df, ld(qr + x), ld(keys[j] + x), a0, b0);
      S[static_cast<size_t>(j) * s_stride + r] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a0, b0))) + tail(qr, keys[j]);
    }
  }
}
#endif

// acc[m + r][c0 .. c0 + C*N) += sum_j P[j][m + r] * V[j][c0 ..]: R x C accumulators. Values
// are fp32 (widened tile) or bf16 (few rows: read straight from the cache).
template <int R, int C, typename T>
HWY_INLINE void pv_block(const float* HWY_RESTRICT P, size_t p_stride, const T* const* values, int n,
                         float* HWY_RESTRICT acc, size_t acc_stride) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const VF z = hn::Zero(df);
  VF o00 = z, o01 = z, o02 = z, o03 = z, o10 = z, o11 = z, o12 = z, o13 = z, o20 = z, o21 = z, o22 = z, o23 = z;
  VF o30 = z, o31 = z, o32 = z, o33 = z, o40 = z, o41 = z, o42 = z, o43 = z, o50 = z, o51 = z, o52 = z, o53 = z;
#define MLA_PV_LOAD(r)                                                             \
  if constexpr (R > r) {                                                           \
    const float* o = acc + static_cast<size_t>(r) * acc_stride;                    \
    o##r##0 = hn::LoadU(df, o);                                                    \
    if constexpr (C > 1) o##r##1 = hn::LoadU(df, o + N);                           \
    if constexpr (C > 2) o##r##2 = hn::LoadU(df, o + 2 * N);                       \
    if constexpr (C > 3) o##r##3 = hn::LoadU(df, o + 3 * N);                       \
  }
  MLA_PV_LOAD(0) MLA_PV_LOAD(1) MLA_PV_LOAD(2) MLA_PV_LOAD(3) MLA_PV_LOAD(4) MLA_PV_LOAD(5)
#undef MLA_PV_LOAD
  for (int j = 0; j < n; ++j) {
    const T* v = values[j];
    const float* p = P + static_cast<size_t>(j) * p_stride;
    const VF v0 = load_f32(df, v);
    const VF v1 = C > 1 ? load_f32(df, v + N) : z;
    const VF v2 = C > 2 ? load_f32(df, v + 2 * N) : z;
    const VF v3 = C > 3 ? load_f32(df, v + 3 * N) : z;
#define MLA_PV_ROW(r)                                             \
  if constexpr (R > r) {                                          \
    const VF w = hn::Set(df, p[r]);                               \
    o##r##0 = hn::MulAdd(w, v0, o##r##0);                         \
    if constexpr (C > 1) o##r##1 = hn::MulAdd(w, v1, o##r##1);    \
    if constexpr (C > 2) o##r##2 = hn::MulAdd(w, v2, o##r##2);    \
    if constexpr (C > 3) o##r##3 = hn::MulAdd(w, v3, o##r##3);    \
  }
    MLA_PV_ROW(0) MLA_PV_ROW(1) MLA_PV_ROW(2) MLA_PV_ROW(3) MLA_PV_ROW(4) MLA_PV_ROW(5)
#undef MLA_PV_ROW
  }
#define MLA_PV_STORE(r)                                                  \
  if constexpr (R > r) {                                                 \
    float* o = acc + static_cast<size_t>(r) * acc_stride;                \
    hn::StoreU(o##r##0, df, o);                                          \
    if constexpr (C > 1) hn::StoreU(o##r##1, df, o + N);                 \
    if constexpr (C > 2) hn::StoreU(o##r##2, df, o + 2 * N);             \
    if constexpr (C > 3) hn::StoreU(o##r##3, df, o + 3 * N);             \
  }
  MLA_PV_STORE(0) MLA_PV_STORE(1) MLA_PV_STORE(2) MLA_PV_STORE(3) MLA_PV_STORE(4) MLA_PV_STORE(5)
#undef MLA_PV_STORE
}

// R rows of the accumulator over every column: C-vector blocks, then single vectors.
template <int R, typename T>
void pv_rows(const float* P, size_t p_stride, const T* const* values, int n, size_t cols, float* acc,
             size_t acc_stride, const T** shifted) {
  const size_t N = hn::Lanes(DF());
  size_t c = 0;
  for (; c + kPvCols * N <= cols; c += kPvCols * N) {
    for (int j = 0; j < n; ++j) shifted[j] = values[j] + c;
    pv_block<R, kPvCols>(P, p_stride, shifted, n, acc + c, acc_stride);
  }
  for (; c < cols; c += N) {
    for (int j = 0; j < n; ++j) shifted[j] = values[j] + c;
    pv_block<R, 1>(P, p_stride, shifted, n, acc + c, acc_stride);
  }
}

template <typename T>
void accumulate_values(const float* P, size_t p_stride, const T* const* values, int n, int rows, size_t cols,
                       float* acc, const T** shifted) {
  int m = 0;
  for (; m + kPvRows <= rows; m += kPvRows) pv_rows<kPvRows>(P + m, p_stride, values, n, cols, acc + m * cols, cols, shifted);
  float* a = acc + static_cast<size_t>(m) * cols;
  switch (rows - m) {
    case 5: pv_rows<5>(P + m, p_stride, values, n, cols, a, cols, shifted); break;
    case 4: pv_rows<4>(P + m, p_stride, values, n, cols, a, cols, shifted); break;
    case 3: pv_rows<3>(P + m, p_stride, values, n, cols, a, cols, shifted); break;
    case 2: pv_rows<2>(P + m, p_stride, values, n, cols, a, cols, shifted); break;
    case 1: pv_rows<1>(P + m, p_stride, values, n, cols, a, cols, shifted); break;
    default: break;
  }
}

// Online softmax on S^T[j][m] (m_pad columns, one vector of rows at a time): mask, scale, new
// running max, probabilities in place, running sums; alpha[m] is the rescale of the old rows.
void softmax_tile(float* S, size_t m_pad, int n, int64_t n0, const int32_t* visible, float scale, float* row_max,
                  float* row_sum, float* alpha) {
  const DF df;
  const DI di;
  const size_t N = hn::Lanes(df);
  const VF neg_inf = hn::Set(df, kNegInf), vscale = hn::Set(df, scale), one = hn::Set(df, 1.0f);
  for (size_t m = 0; m < m_pad; m += N) {
    const auto vis = hn::LoadU(di, visible + m);
    VF tmax = neg_inf;
    for (int j = 0; j < n; ++j) {
      float* row = S + static_cast<size_t>(j) * m_pad + m;
      const auto ok = hn::RebindMask(df, hn::Lt(hn::Set(di, static_cast<int32_t>(n0 + j)), vis));
      const VF sc = hn::IfThenElse(ok, hn::Mul(hn::LoadU(df, row), vscale), neg_inf);
      hn::StoreU(sc, df, row);
      tmax = hn::Max(tmax, sc);
    }
    const VF old_max = hn::LoadU(df, row_max + m);
    const VF new_max = hn::Max(old_max, tmax);
    const auto live = hn::Ne(new_max, neg_inf);
    const VF base = hn::IfThenElseZero(live, new_max);
    // Exp(-inf) is 0 in Highway (inputs below -104 give 0), so masked keys get weight 0.
    const VF al = hn::IfThenElse(live, hn::Exp(df, hn::Sub(old_max, base)), one);
    VF sum = hn::Mul(hn::LoadU(df, row_sum + m), al);
    for (int j = 0; j < n; ++j) {
      float* row = S + static_cast<size_t>(j) * m_pad + m;
      const VF p = hn::Exp(df, hn::Sub(hn::LoadU(df, row), base));
      sum = hn::Add(sum, p);
      hn::StoreU(p, df, row);
    }
    hn::StoreU(sum, df, row_sum + m);
    hn::StoreU(new_max, df, row_max + m);
    hn::StoreU(al, df, alpha + m);
  }
}

}  // namespace

void RunTask(const TaskArgs& a, TaskScratch& s) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const int rows = a.rows, d_qk = a.d_qk, tile = a.tile;
  const size_t ld = round_up(static_cast<size_t>(d_qk), N);      // widened rows, zero padded
  const size_t cols = round_up(static_cast<size_t>(a.d_v), N);  // accumulator columns
  const size_t m_pad = round_up(static_cast<size_t>(rows), N);
  const bool few_rows = static_cast<size_t>(rows) < N;
  // Few bf16 rows against a bf16 cache read keys and values straight from the cache rows
  // (values up to `cols`, so the rounded-up columns must stay inside the row).
  const bool direct_bf16 = kDirectBf16 && few_rows && a.dtype == DType::bf16 && a.kv_format == KvFormat::bf16 &&
                           cols <= static_cast<size_t>(d_qk);
  const int64_t d_c = a.d_v, d_r = d_qk - a.d_v;
  const size_t esize = dtype_size(kv_format_traits(a.kv_format).element);

  // Queries: row-major (few rows) or transposed Q^T[k][m] (rows in lanes).
  s.q_f32.assign(static_cast<size_t>(rows) * ld, 0.0f);
  for (int r = 0; r < rows; ++r) {
    float* q = &s.q_f32[static_cast<size_t>(r) * ld];
    widen_to_f32(a.q_rows[r], a.dtype, d_qk, q);
    if (a.kv_fold) multiply_in_place(q, a.kv_fold, static_cast<size_t>(d_qk));
  }
  if (!few_rows) {
    s.q_t.assign(static_cast<size_t>(d_qk) * m_pad, 0.0f);
    for (int r = 0; r < rows; ++r)
      for (int k = 0; k < d_qk; ++k) s.q_t[static_cast<size_t>(k) * m_pad + r] = s.q_f32[static_cast<size_t>(r) * ld + k];
  }
  s.kv_f32.resize(static_cast<size_t>(tile) * ld);
  s.acc.assign(static_cast<size_t>(rows) * cols, 0.0f);
  s.row_max.assign(m_pad, kNegInf);
  s.row_sum.assign(m_pad, 0.0f);
  s.alpha.assign(m_pad, 1.0f);
  s.visible.assign(m_pad, 0);
  s.scores.resize(static_cast<size_t>(tile) * m_pad);
  s.f32_rows.resize(static_cast<size_t>(tile));
  s.f32_shifted.resize(static_cast<size_t>(tile));
  s.bf16_rows.resize(static_cast<size_t>(tile));
  s.bf16_shifted.resize(static_cast<size_t>(tile));
  s.bf16_q.resize(static_cast<size_t>(rows));
  for (int r = 0; r < rows; ++r) s.bf16_q[static_cast<size_t>(r)] = static_cast<const uint16_t*>(a.q_rows[r]);

  int64_t end = a.begin;  // no key past the last one any row may see
  for (int r = 0; r < rows; ++r) {
    s.visible[static_cast<size_t>(r)] = static_cast<int32_t>(a.visible[r]);
    end = std::max(end, std::min(a.end, a.visible[r]));
  }

  // Cache-row addresses of token t: KV pages are scattered, so the hardware prefetcher loses
  // the stream at every tile; the next tile's rows are prefetched while this one is widened.
  auto key_row = [&](int64_t token) {
    const int64_t block = a.block_row[token / a.page_size];
    const int64_t off = block * a.block_stride + (token % a.page_size) * a.token_stride + a.head_offset;
    return static_cast<const char*>(a.kv) + off * static_cast<int64_t>(esize);
  };
  const auto row_bytes = static_cast<size_t>(kv_token_bytes(a.kv_format, d_c, d_r));
  for (int64_t n0 = a.begin; n0 < end; n0 += tile) {
    const int n = static_cast<int>(std::min<int64_t>(tile, end - n0));
    const int64_t next = n0 + tile;
    const float** keys = s.f32_rows.data();
    const uint16_t** raw = s.bf16_rows.data();
    for (int j = 0; j < n; ++j) {
      if (next + j < end) {
        const char* ahead = key_row(next + j);
        for (size_t b = 0; b < row_bytes; b += 64) hwy::Prefetch(ahead + b);
      }
      if (direct_bf16) {
        raw[j] = reinterpret_cast<const uint16_t*>(key_row(n0 + j));
        continue;
      }
      float* dst = &s.kv_f32[static_cast<size_t>(j) * ld];
      dequantize_token_f32(key_row(n0 + j), a.kv_format, nullptr, d_c, d_r, /*apply_scales=*/false, dst);
      std::fill(dst + d_qk, dst + ld, 0.0f);
      keys[j] = dst;
    }

    float* S = s.scores.data();
    if (direct_bf16) {
      score_few_rows_bf16(s.bf16_q.data(), rows, d_qk, raw, n, S, m_pad);
    } else if (few_rows) {
      score_few_rows<2>(s.q_f32.data(), ld, rows, keys, n, S, m_pad);
      if (rows % 2) {
        const int r = rows - 1;
        score_few_rows<1>(s.q_f32.data() + static_cast<size_t>(r) * ld, ld, 1, keys, n, S + r, m_pad);
      }
    } else {
      for (size_t m0 = 0; m0 < m_pad; m0 += kMaxRowVecs * N) {
        const size_t vecs = std::min<size_t>(kMaxRowVecs, (m_pad - m0) / N);
        const float* qT = s.q_t.data() + m0;
        if (vecs == 1) score_rows_in_lanes<1>(qT, m_pad, d_qk, keys, n, S + m0, m_pad);
        else if (vecs == 2) score_rows_in_lanes<2>(qT, m_pad, d_qk, keys, n, S + m0, m_pad);
        else score_rows_in_lanes<3>(qT, m_pad, d_qk, keys, n, S + m0, m_pad);
      }
    }

    softmax_tile(S, m_pad, n, n0, s.visible.data(), a.scale, s.row_max.data(), s.row_sum.data(), s.alpha.data());
    for (int r = 0; r < rows; ++r) {
      const float al = s.alpha[static_cast<size_t>(r)];
      if (al == 1.0f) continue;
      float* o = &s.acc[static_cast<size_t>(r) * cols];
      const VF va = hn::Set(df, al);
      for (size_t c = 0; c < cols; c += N) hn::StoreU(hn::Mul(hn::LoadU(df, o + c), va), df, o + c);
    }
    if (direct_bf16) accumulate_values(S, m_pad, raw, n, rows, cols, s.acc.data(), s.bf16_shifted.data());
    else accumulate_values(S, m_pad, keys, n, rows, cols, s.acc.data(), s.f32_shifted.data());
  }

  for (int r = 0; r < rows; ++r) {
    const float sum = s.row_sum[static_cast<size_t>(r)];
    float* out = a.out + static_cast<int64_t>(r) * a.d_v;
    if (sum == 0.0f) {
      std::fill(out, out + a.d_v, 0.0f);
      a.lse[r] = kNegInf;
      continue;
    }
    const float inv = 1.0f / sum;
    const float* acc = &s.acc[static_cast<size_t>(r) * cols];
    for (int d = 0; d < a.d_v; ++d) out[d] = acc[d] * inv;
    if (a.kv_fold) multiply_in_place(out, a.kv_fold, static_cast<size_t>(a.d_v));
    a.lse[r] = s.row_max[static_cast<size_t>(r)] + std::log(sum);
  }
}

// The target this copy was compiled for (HWY_DYNAMIC_DISPATCH of it gives Highway's pick).
int64_t CompiledTarget() { return HWY_TARGET; }

}  // namespace HWY_NAMESPACE
}  // namespace mla::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "simd_table.hpp"

namespace mla::cpu {

HWY_EXPORT(CompiledTarget);

int64_t best_compiled_target() { return HWY_DYNAMIC_DISPATCH(CompiledTarget)(); }

// Every copy foreach_target compiled, best first; HWY_CHOOSE_* gives null for the others.
std::vector<CompiledKernel> compiled_task_kernels() {
  const CompiledKernel all[] = {
#if HWY_ARCH_X86
      {HWY_AVX3_DL, HWY_CHOOSE_AVX3_DL(RunTask)}, {HWY_AVX3, HWY_CHOOSE_AVX3(RunTask)},
      {HWY_AVX2, HWY_CHOOSE_AVX2(RunTask)},       {HWY_SSE4, HWY_CHOOSE_SSE4(RunTask)},
      {HWY_SSSE3, HWY_CHOOSE_SSSE3(RunTask)},
#elif HWY_ARCH_ARM
      {HWY_SVE2_128, HWY_CHOOSE_SVE2_128(RunTask)}, {HWY_SVE_256, HWY_CHOOSE_SVE_256(RunTask)},
      {HWY_SVE2, HWY_CHOOSE_SVE2(RunTask)},         {HWY_SVE, HWY_CHOOSE_SVE(RunTask)},
      {HWY_NEON, HWY_CHOOSE_NEON(RunTask)},
#endif
      {MLA_HWY_FALLBACK_TARGET, HWY_CHOOSE_FALLBACK(RunTask)},
  };
  std::vector<CompiledKernel> out;
  for (const CompiledKernel& k : all)
    if (k.run) out.push_back(k);
  return out;
}

}  // namespace mla::cpu
#endif  // HWY_ONCE
