// AVX-512 BF16 task kernel. Compiled with -mavx512bf16; called only when the CPU has it.
//
// Layouts (m = query row, padded to 16 lanes; kp = pair of head dimensions; np = pair of keys):
//   scores:  S^T[key][m]  = sum_kp Q^T[kp][m] . K[key][kp]  (K pairs broadcast straight from the
//            cache row, so keys need no repacking)
//   values:  O[m][d]     += sum_np P[np][m] . V[np][d]      (two key rows interleaved per tile)
// vdpbf16ps multiplies bf16 pairs and accumulates in fp32.
#include "task_kernel.hpp"

#if !defined(__AVX512BF16__)
#include "mla/error.hpp"

namespace mla::cpu {
// Not an x86 build: cpu_has_avx512_bf16() is false, so the kernel is never chosen.
void run_task_avx512_bf16(const TaskArgs&, TaskScratch&) {
  fail(ErrorCode::internal, "cpu: the AVX-512 BF16 kernel is not built for this architecture");
}
}  // namespace mla::cpu
#else
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "mla/error.hpp"
#include "task_kernel.hpp"

namespace mla::cpu {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

inline uint32_t load_pair(const uint16_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline __m512 exp512(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
  const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 y = _mm512_mul_ps(_mm512_sub_ps(t, n), _mm512_set1_ps(0.693147180559945309f));
  __m512 p = _mm512_set1_ps(1.0f / 720.0f);
  p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

inline __m512bh as_bh(__m512i v) { return reinterpret_cast<__m512bh>(v); }

// S^T[j][0..16V) for T keys at once: T x V accumulators, Q^T vectors reused across keys.
template <int T, int V>
void score_keys(const uint32_t* qT, int m_stride, int kp, const uint16_t* const* keys, float* S, int s_stride) {
  __m512 acc[T][V];
  for (int t = 0; t < T; ++t)
    for (int v = 0; v < V; ++v) acc[t][v] = _mm512_setzero_ps();
  for (int k = 0; k < kp; ++k) {
    __m512i b[V];
    for (int v = 0; v < V; ++v) b[v] = _mm512_loadu_si512(qT + static_cast<int64_t>(k) * m_stride + 16 * v);
    for (int t = 0; t < T; ++t) {
      const __m512i a = _mm512_set1_epi32(static_cast<int>(load_pair(keys[t] + 2 * k)));
      for (int v = 0; v < V; ++v) acc[t][v] = _mm512_dpbf16_ps(acc[t][v], as_bh(b[v]), as_bh(a));
    }
  }
  for (int t = 0; t < T; ++t)
    for (int v = 0; v < V; ++v) _mm512_storeu_ps(S + static_cast<int64_t>(t) * s_stride + 16 * v, acc[t][v]);
}

// Keys per register tile: enough independent accumulators (keys x row-vectors) to cover the
// latency of vdpbf16ps when only a few row-vectors exist (few heads).
constexpr int keys_per_step(int vecs) { return vecs == 1 ? 8 : vecs == 2 ? 5 : 3; }

template <int V>
void score_tile(const uint32_t* qT, int m_stride, int kp, const uint16_t* const* keys, int n, float* S, int s_stride) {
  constexpr int T = keys_per_step(V);
  int j = 0;
  for (; j + T <= n; j += T) score_keys<T, V>(qT, m_stride, kp, keys + j, S + static_cast<int64_t>(j) * s_stride, s_stride);
  if constexpr (T > 3)
    for (; j + 3 <= n; j += 3) score_keys<3, V>(qT, m_stride, kp, keys + j, S + static_cast<int64_t>(j) * s_stride, s_stride);
  if (n - j == 2) score_keys<2, V>(qT, m_stride, kp, keys + j, S + static_cast<int64_t>(j) * s_stride, s_stride);
  if (n - j == 1) score_keys<1, V>(qT, m_stride, kp, keys + j, S + static_cast<int64_t>(j) * s_stride, s_stride);
}

void score_dispatch(int vecs, const uint32_t* qT, int m_stride, int kp, const uint16_t* const* keys, int n, float* S,
                    int s_stride) {
  switch (vecs) {
    case 1: score_tile<1>(qT, m_stride, kp, keys, n, S, s_stride); break;
    case 2: score_tile<2>(qT, m_stride, kp, keys, n, S, s_stride); break;
    case 3: score_tile<3>(qT, m_stride, kp, keys, n, S, s_stride); break;
    case 4: score_tile<4>(qT, m_stride, kp, keys, n, S, s_stride); break;
    case 5: score_tile<5>(qT, m_stride, kp, keys, n, S, s_stride); break;
    case 6: score_tile<6>(qT, m_stride, kp, keys, n, S, s_stride); break;
    case 7: score_tile<7>(qT, m_stride, kp, keys, n, S, s_stride); break;
    default: score_tile<8>(qT, m_stride, kp, keys, n, S, s_stride); break;
  }
}

// Interleaves two bf16 rows of 32 elements into 16-lane pairs: (a0 b0)(a1 b1)... twice.
inline void interleave_rows(__m512i a, __m512i b, uint32_t* dst) {
  alignas(64) static const uint16_t lo_idx[32] = {0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39,
                                                  8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  alignas(64) static const uint16_t hi_idx[32] = {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
                                                  24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63};
  const __m512i lo = _mm512_permutex2var_epi16(a, _mm512_load_si512(lo_idx), b);
  const __m512i hi = _mm512_permutex2var_epi16(a, _mm512_load_si512(hi_idx), b);
  _mm512_storeu_si512(dst, lo);
  _mm512_storeu_si512(dst + 16, hi);
}

// O[m][d-chunk of 64] for 4 rows at a time over np key pairs.
void accumulate_values(const uint32_t* P, int m_stride, const uint32_t* Vp, int d_v, int np, float* acc, int rows4) {
  for (int dc = 0; dc < d_v; dc += 64) {
    for (int m = 0; m < rows4; m += 4) {
      __m512 o[4][4];
      for (int r = 0; r < 4; ++r)
        for (int v = 0; v < 4; ++v) o[r][v] = _mm512_loadu_ps(acc + static_cast<int64_t>(m + r) * d_v + dc + 16 * v);
      for (int k = 0; k < np; ++k) {
        __m512i b[4];
        for (int v = 0; v < 4; ++v) b[v] = _mm512_loadu_si512(Vp + static_cast<int64_t>(k) * d_v + dc + 16 * v);
        for (int r = 0; r < 4; ++r) {
          const __m512i a = _mm512_set1_epi32(static_cast<int>(P[static_cast<int64_t>(k) * m_stride + m + r]));
          for (int v = 0; v < 4; ++v) o[r][v] = _mm512_dpbf16_ps(o[r][v], as_bh(b[v]), as_bh(a));
        }
      }
      for (int r = 0; r < 4; ++r)
        for (int v = 0; v < 4; ++v) _mm512_storeu_ps(acc + static_cast<int64_t>(m + r) * d_v + dc + 16 * v, o[r][v]);
    }
  }
}

}  // namespace

void run_task_avx512_bf16(const TaskArgs& a, TaskScratch& s) {
  // choose_kernel sends only bf16 queries on a bf16 cache here; anything else would be read as
  // bf16 pairs and give wrong numbers silently.
  if (a.dtype != DType::bf16 || a.kv_format != KvFormat::bf16 || a.kv_fold)
    fail(ErrorCode::internal, "cpu: the AVX-512 BF16 kernel was given a non-bf16 query or cache");
  const int rows = a.rows, d_v = a.d_v, tile = a.tile;
  const int kp = a.d_qk / 2;
  const int m_pad = (rows + 15) / 16 * 16;
  const int rows4 = (rows + 3) / 4 * 4;
  const int pairs = (tile + 1) / 2;

  s.q_packed.assign(static_cast<size_t>(kp) * m_pad, 0u);
  for (int r = 0; r < rows; ++r) {
    const auto* q = static_cast<const uint16_t*>(a.q_rows[r]);
    for (int k = 0; k < kp; ++k) s.q_packed[static_cast<size_t>(k) * m_pad + r] = load_pair(q + 2 * k);
  }
  s.acc.assign(static_cast<size_t>(m_pad) * d_v, 0.0f);
  s.row_max.assign(static_cast<size_t>(m_pad), kNegInf);
  s.row_sum.assign(static_cast<size_t>(m_pad), 0.0f);
  s.scores.resize(static_cast<size_t>(tile) * m_pad + static_cast<size_t>(m_pad));
  s.p_packed.resize(static_cast<size_t>(pairs) * m_pad);
  s.v_packed.resize(static_cast<size_t>(pairs) * d_v);
  s.key_rows.resize(static_cast<size_t>(tile));
  std::vector<int32_t> visible(static_cast<size_t>(m_pad), 0);
  std::vector<float> alpha(static_cast<size_t>(m_pad));

  int64_t end = a.begin;
  for (int r = 0; r < rows; ++r) {
    visible[static_cast<size_t>(r)] = static_cast<int32_t>(a.visible[r]);
    end = std::max(end, std::min(a.end, a.visible[r]));
  }
  const size_t elem = sizeof(uint16_t);
  const __m512 scale = _mm512_set1_ps(a.scale);
  const __m512 neg_inf = _mm512_set1_ps(kNegInf);
  alignas(64) static const uint16_t pair_idx[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                                    8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i pair_perm = _mm512_load_si512(pair_idx);

  for (int64_t n0 = a.begin; n0 < end; n0 += tile) {
    const int n = static_cast<int>(std::min<int64_t>(tile, end - n0));
    const int np = (n + 1) / 2;
    auto** keys = reinterpret_cast<const uint16_t**>(s.key_rows.data());
    for (int j = 0; j < n; ++j) {
      const int64_t token = n0 + j;
      const int64_t block = a.block_row[token / a.page_size];
      const int64_t off = block * a.block_stride + (token % a.page_size) * a.token_stride + a.head_offset;
      keys[j] = reinterpret_cast<const uint16_t*>(static_cast<const char*>(a.kv) + off * static_cast<int64_t>(elem));
    }
    float* S = s.scores.data();
    for (int m0 = 0; m0 < m_pad; m0 += 128)
      score_dispatch(std::min(8, (m_pad - m0) / 16), s.q_packed.data() + m0, m_pad, kp, keys, n, S + m0, m_pad);

    // Online softmax, 16 rows per vector.
    for (int m = 0; m < m_pad; m += 16) {
      const __m512i vis = _mm512_loadu_si512(&visible[static_cast<size_t>(m)]);
      __m512 tmax = neg_inf;
      for (int j = 0; j < n; ++j) {
        float* row = S + static_cast<int64_t>(j) * m_pad + m;
        const __mmask16 ok = _mm512_cmpgt_epi32_mask(vis, _mm512_set1_epi32(static_cast<int>(n0 + j)));
        const __m512 sc = _mm512_mask_mul_ps(neg_inf, ok, _mm512_loadu_ps(row), scale);
        _mm512_storeu_ps(row, sc);
        tmax = _mm512_max_ps(tmax, sc);
      }
      const __m512 old_max = _mm512_loadu_ps(&s.row_max[static_cast<size_t>(m)]);
      const __m512 new_max = _mm512_max_ps(old_max, tmax);
      const __mmask16 live = _mm512_cmp_ps_mask(new_max, neg_inf, _CMP_NEQ_OQ);
      const __m512 base = _mm512_maskz_mov_ps(live, new_max);
      const __m512 al = _mm512_mask_blend_ps(live, _mm512_set1_ps(1.0f), exp512(_mm512_sub_ps(old_max, base)));
      __m512 sum = _mm512_mul_ps(_mm512_loadu_ps(&s.row_sum[static_cast<size_t>(m)]), al);
      for (int j = 0; j < n; ++j) {
        float* row = S + static_cast<int64_t>(j) * m_pad + m;
        const __m512 sc = _mm512_loadu_ps(row);
        const __mmask16 ok = _mm512_cmp_ps_mask(sc, neg_inf, _CMP_NEQ_OQ);
        const __m512 p = _mm512_maskz_mov_ps(ok, exp512(_mm512_sub_ps(sc, base)));
        sum = _mm512_add_ps(sum, p);
        _mm512_storeu_ps(row, p);
      }
      _mm512_storeu_ps(&s.row_sum[static_cast<size_t>(m)], sum);
      _mm512_storeu_ps(&s.row_max[static_cast<size_t>(m)], new_max);
      _mm512_storeu_ps(&alpha[static_cast<size_t>(m)], al);
    }
    for (int r = 0; r < rows; ++r) {
      const float al = alpha[static_cast<size_t>(r)];
      if (al == 1.0f) continue;
      float* o = &s.acc[static_cast<size_t>(r) * d_v];
      const __m512 va = _mm512_set1_ps(al);
      for (int d = 0; d < d_v; d += 16) _mm512_storeu_ps(o + d, _mm512_mul_ps(_mm512_loadu_ps(o + d), va));
    }

    // P pairs: (p[2k][m], p[2k+1][m]) as bf16, the odd key of an odd tail is zero weight.
    if (n % 2) std::fill_n(S + static_cast<int64_t>(n) * m_pad, m_pad, 0.0f);
    for (int k = 0; k < np; ++k)
      for (int m = 0; m < m_pad; m += 16) {
        const __m512 even = _mm512_loadu_ps(S + static_cast<int64_t>(2 * k) * m_pad + m);
        const __m512 odd = _mm512_loadu_ps(S + static_cast<int64_t>(2 * k + 1) * m_pad + m);
        const __m512i packed = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(odd, even));
        const __m512i pairs16 = _mm512_permutexvar_epi16(pair_perm, packed);
        _mm512_storeu_si512(&s.p_packed[static_cast<size_t>(k) * m_pad + m], pairs16);
      }
    // V pairs from the first d_v elements of each key row; a missing odd row reads as zeros.
    for (int k = 0; k < np; ++k) {
      const uint16_t* even = keys[2 * k];
      const uint16_t* odd = 2 * k + 1 < n ? keys[2 * k + 1] : nullptr;
      uint32_t* dst = &s.v_packed[static_cast<size_t>(k) * d_v];
      for (int d = 0; d < d_v; d += 32) {
        const __m512i ev = _mm512_loadu_si512(even + d);
        const __m512i od = odd ? _mm512_loadu_si512(odd + d) : _mm512_setzero_si512();
        interleave_rows(ev, od, dst + d);
      }
    }
    accumulate_values(s.p_packed.data(), m_pad, s.v_packed.data(), d_v, np, s.acc.data(), rows4);
  }

  for (int r = 0; r < rows; ++r) {
    const float sum = s.row_sum[static_cast<size_t>(r)];
    float* out = a.out + static_cast<int64_t>(r) * d_v;
    if (sum == 0.0f) {
      std::fill(out, out + d_v, 0.0f);
      a.lse[r] = kNegInf;
      continue;
    }
    const float inv = 1.0f / sum;
    for (int d = 0; d < d_v; ++d) out[d] = s.acc[static_cast<size_t>(r) * d_v + d] * inv;
    a.lse[r] = s.row_max[static_cast<size_t>(r)] + std::log(sum);
  }
}

}  // namespace mla::cpu
#endif  // __AVX512BF16__
