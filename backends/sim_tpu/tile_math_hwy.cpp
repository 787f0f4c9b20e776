// The BDC's arithmetic on fp32 tiles, written once over Highway and compiled for every SIMD
// target of the architecture (foreach_target); tile_math_for_this_cpu() takes Highway's pick.
// Vectors live in named variables, never arrays: SVE vectors are sizeless and cannot be.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "tile_math_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep

#include <hwy/highway.h>

#include <cstring>

#include "mla/simd/widen-inl.h"
#include "tile_math.hpp"

HWY_BEFORE_NAMESPACE();
namespace mla::sim_tpu {
namespace HWY_NAMESPACE {
namespace {

namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// 16 vector registers on SSE4 / AVX2 (and the scalar fallback), 32 on AVX-512, NEON and SVE.
#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_SSSE3 || HWY_TARGET == HWY_EMU128 || \
    HWY_TARGET == HWY_SCALAR
constexpr int kScoreKeys = 2;  // 4 rows x 2 keys: 8 accumulators, 6 loads
constexpr int kPvCols = 2;     // 4 rows x 2 vectors of columns
#else
constexpr int kScoreKeys = 4;  // 4 rows x 4 keys: 16 accumulators, 8 loads
constexpr int kPvCols = 4;
#endif
constexpr int kKeyBlock = 32;  // keys per cache block (32 fp32 rows of 576 stay in L1/L2)

int min_int(int a, int b) { return a < b ? a : b; }

float sum_lanes(DF df, VF v) { return hn::GetLane(hn::SumOfLanes(df, v)); }

// s[r][j] for R rows x K keys: dot products along d, each query load reused by K keys and each
// key load by R rows; the d % N tail is added in scalar code.
template <int R, int K>
HWY_INLINE void score_block(const float* HWY_RESTRICT q, int d, const float* HWY_RESTRICT k, float scale,
                            float* HWY_RESTRICT s, int n) {
  const DF df;
  const int N = static_cast<int>(hn::Lanes(df));
  const VF z = hn::Zero(df);
  VF a00 = z, a01 = z, a02 = z, a03 = z, a10 = z, a11 = z, a12 = z, a13 = z;
  VF a20 = z, a21 = z, a22 = z, a23 = z, a30 = z, a31 = z, a32 = z, a33 = z;
  const float* q0 = q;
  const float* q1 = q0 + (R > 1 ? d : 0);
  const float* q2 = q0 + (R > 2 ? 2 * d : 0);
  const float* q3 = q0 + (R > 3 ? 3 * d : 0);
  const float* k0 = k;
  const float* k1 = k0 + (K > 1 ? d : 0);
  const float* k2 = k0 + (K > 2 ? 2 * d : 0);
  const float* k3 = k0 + (K > 3 ? 3 * d : 0);
  int x = 0;
  for (; x + N <= d; x += N) {
    const VF y0 = hn::LoadU(df, k0 + x);
    const VF y1 = K > 1 ? hn::LoadU(df, k1 + x) : z;
    const VF y2 = K > 2 ? hn::LoadU(df, k2 + x) : z;
    const VF y3 = K > 3 ? hn::LoadU(df, k3 + x) : z;
#define MLA_SCORE_ROW(r)                                       \
  if constexpr (R > r) {                                       \
    const VF w = hn::LoadU(df, q##r + x);                      \
    a##r##0 = hn::MulAdd(w, y0, a##r##0);                      \
    if constexpr (K > 1) a##r##1 = hn::MulAdd(w, y1, a##r##1); \
    if constexpr (K > 2) a##r##2 = hn::MulAdd(w, y2, a##r##2); \
    if constexpr (K > 3) a##r##3 = hn::MulAdd(w, y3, a##r##3); \
  }
    MLA_SCORE_ROW(0) MLA_SCORE_ROW(1) MLA_SCORE_ROW(2) MLA_SCORE_ROW(3)
#undef MLA_SCORE_ROW
  }
  const float* qs[4] = {q0, q1, q2, q3};
  const float* ks[4] = {k0, k1, k2, k3};
  float tail[4][4] = {};
  for (; x < d; ++x)
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < K; ++j) tail[r][j] += qs[r][x] * ks[j][x];
#define MLA_SCORE_OUT(r, j) \
  if constexpr (R > r && K > j) s[r * n + j] = scale * (sum_lanes(df, a##r##j) + tail[r][j]);
  MLA_SCORE_OUT(0, 0) MLA_SCORE_OUT(0, 1) MLA_SCORE_OUT(0, 2) MLA_SCORE_OUT(0, 3)
  MLA_SCORE_OUT(1, 0) MLA_SCORE_OUT(1, 1) MLA_SCORE_OUT(1, 2) MLA_SCORE_OUT(1, 3)
  MLA_SCORE_OUT(2, 0) MLA_SCORE_OUT(2, 1) MLA_SCORE_OUT(2, 2) MLA_SCORE_OUT(2, 3)
  MLA_SCORE_OUT(3, 0) MLA_SCORE_OUT(3, 1) MLA_SCORE_OUT(3, 2) MLA_SCORE_OUT(3, 3)
#undef MLA_SCORE_OUT
}

template <int R>
void score_rows(const float* q, const float* k, int j0, int j1, int n, int d, float scale, float* s) {
  int j = j0;
  for (; j + kScoreKeys <= j1; j += kScoreKeys)
    score_block<R, kScoreKeys>(q, d, k + static_cast<int64_t>(j) * d, scale, s + j, n);
  for (; j < j1; ++j) score_block<R, 1>(q, d, k + static_cast<int64_t>(j) * d, scale, s + j, n);
}

// Keys in blocks of kKeyBlock so a block stays cached while every row block passes over it.
void Scores(const float* q, int rows, const float* k, int n, int d, float scale, float* s) {
  for (int j0 = 0; j0 < n; j0 += kKeyBlock) {
    const int j1 = min_int(n, j0 + kKeyBlock);
    int r = 0;
    for (; r + 4 <= rows; r += 4) score_rows<4>(q + static_cast<int64_t>(r) * d, k, j0, j1, n, d, scale, s + static_cast<int64_t>(r) * n);
    for (; r < rows; ++r) score_rows<1>(q + static_cast<int64_t>(r) * d, k, j0, j1, n, d, scale, s + static_cast<int64_t>(r) * n);
  }
}

// acc[r][c0 .. c0 + C*N) += sum_j p[r][j] v[j][c0 ..] for R rows: R x C accumulators kept in
// registers while the keys j0..j1 stream past.
template <int R, int C>
HWY_INLINE void pv_block(const float* HWY_RESTRICT p, int n, int j0, int j1, const float* HWY_RESTRICT v, int ldv,
                         float* HWY_RESTRICT acc, int d_v) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const VF z = hn::Zero(df);
  VF o00 = z, o01 = z, o02 = z, o03 = z, o10 = z, o11 = z, o12 = z, o13 = z;
  VF o20 = z, o21 = z, o22 = z, o23 = z, o30 = z, o31 = z, o32 = z, o33 = z;
#define MLA_PV_LOAD(r)                                                  \
  if constexpr (R > r) {                                                \
    const float* o = acc + static_cast<int64_t>(r) * d_v;               \
    o##r##0 = hn::LoadU(df, o);                                         \
    if constexpr (C > 1) o##r##1 = hn::LoadU(df, o + N);                \
    if constexpr (C > 2) o##r##2 = hn::LoadU(df, o + 2 * N);            \
    if constexpr (C > 3) o##r##3 = hn::LoadU(df, o + 3 * N);            \
  }
  MLA_PV_LOAD(0) MLA_PV_LOAD(1) MLA_PV_LOAD(2) MLA_PV_LOAD(3)
#undef MLA_PV_LOAD
  for (int j = j0; j < j1; ++j) {
    const float* vj = v + static_cast<int64_t>(j) * ldv;
    const VF v0 = hn::LoadU(df, vj);
    const VF v1 = C > 1 ? hn::LoadU(df, vj + N) : z;
    const VF v2 = C > 2 ? hn::LoadU(df, vj + 2 * N) : z;
    const VF v3 = C > 3 ? hn::LoadU(df, vj + 3 * N) : z;
#define MLA_PV_ROW(r)                                             \
  if constexpr (R > r) {                                          \
    const VF w = hn::Set(df, p[static_cast<int64_t>(r) * n + j]); \
    o##r##0 = hn::MulAdd(w, v0, o##r##0);                         \
    if constexpr (C > 1) o##r##1 = hn::MulAdd(w, v1, o##r##1);    \
    if constexpr (C > 2) o##r##2 = hn::MulAdd(w, v2, o##r##2);    \
    if constexpr (C > 3) o##r##3 = hn::MulAdd(w, v3, o##r##3);    \
  }
    MLA_PV_ROW(0) MLA_PV_ROW(1) MLA_PV_ROW(2) MLA_PV_ROW(3)
#undef MLA_PV_ROW
  }
#define MLA_PV_STORE(r)                                                 \
  if constexpr (R > r) {                                                \
    float* o = acc + static_cast<int64_t>(r) * d_v;                     \
    hn::StoreU(o##r##0, df, o);                                         \
    if constexpr (C > 1) hn::StoreU(o##r##1, df, o + N);                \
    if constexpr (C > 2) hn::StoreU(o##r##2, df, o + 2 * N);            \
    if constexpr (C > 3) hn::StoreU(o##r##3, df, o + 3 * N);            \
  }
  MLA_PV_STORE(0) MLA_PV_STORE(1) MLA_PV_STORE(2) MLA_PV_STORE(3)
#undef MLA_PV_STORE
}

template <int R>
void pv_rows(const float* p, int n, int j0, int j1, const float* v, int ldv, int d_v, float* acc) {
  const int N = static_cast<int>(hn::Lanes(DF()));
  int c = 0;
  for (; c + kPvCols * N <= d_v; c += kPvCols * N) pv_block<R, kPvCols>(p, n, j0, j1, v + c, ldv, acc + c, d_v);
  for (; c + N <= d_v; c += N) pv_block<R, 1>(p, n, j0, j1, v + c, ldv, acc + c, d_v);
  for (; c < d_v; ++c)  // columns past the last full vector
    for (int r = 0; r < R; ++r)
      for (int j = j0; j < j1; ++j)
        acc[static_cast<int64_t>(r) * d_v + c] += p[static_cast<int64_t>(r) * n + j] * v[static_cast<int64_t>(j) * ldv + c];
}

void Accumulate(const float* p, int rows, int n, const float* v, int ldv, int d_v, float* acc) {
  for (int j0 = 0; j0 < n; j0 += kKeyBlock) {
    const int j1 = min_int(n, j0 + kKeyBlock);
    int r = 0;
    for (; r + 4 <= rows; r += 4)
      pv_rows<4>(p + static_cast<int64_t>(r) * n, n, j0, j1, v, ldv, d_v, acc + static_cast<int64_t>(r) * d_v);
    for (; r < rows; ++r)
      pv_rows<1>(p + static_cast<int64_t>(r) * n, n, j0, j1, v, ldv, d_v, acc + static_cast<int64_t>(r) * d_v);
  }
}

using mla::HWY_NAMESPACE::widen_to_f32;

// Weights arrive in their storage dtype; each row is widened once, then used by every column.
void Project(const float* x, int depth, const void* w, int64_t ldw, DType dtype, int width, float* dst, float* row) {
  const DF df;
  const int N = static_cast<int>(hn::Lanes(df));
  const int64_t esize = static_cast<int64_t>(dtype_size(dtype));
  for (int k = 0; k < depth; ++k) {
    widen_to_f32(static_cast<const char*>(w) + k * ldw * esize, dtype, width, row);
    const VF xk = hn::Set(df, x[k]);
    int c = 0;
    for (; c + N <= width; c += N) hn::StoreU(hn::MulAdd(xk, hn::LoadU(df, row + c), hn::LoadU(df, dst + c)), df, dst + c);
    for (; c < width; ++c) dst[c] += x[k] * row[c];
  }
}

// The executor keeps the per-tensor / per-channel kv_scale in the dequantized keys (the timing
// model folds it into q and out instead: the same product, rounded once more in fp32).
void DequantizeToken(const void* token, KvFormat format, const float* kv_scale, int64_t d_c, int64_t d_r, float* dst) {
  mla::HWY_NAMESPACE::dequantize_token_f32(token, format, kv_scale, d_c, d_r, /*apply_scales=*/true, dst);
}

}  // namespace

const TileMath* Table() {
  static const TileMath math{&Scores, &Accumulate, &Project, &widen_to_f32, &DequantizeToken, hwy::TargetName(HWY_TARGET)};
  return &math;
}

}  // namespace HWY_NAMESPACE
}  // namespace mla::sim_tpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace mla::sim_tpu {

HWY_EXPORT(Table);

const TileMath& tile_math_for_this_cpu() { return *HWY_DYNAMIC_DISPATCH(Table)(); }

void convert_to_f32(const void* src, DType dtype, int64_t n, float* dst) { tile_math_for_this_cpu().widen(src, dtype, n, dst); }

}  // namespace mla::sim_tpu
#endif  // HWY_ONCE
