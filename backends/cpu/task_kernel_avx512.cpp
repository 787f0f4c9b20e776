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
#include "mla/half.hpp"
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

// 16 fp8 e4m3 bytes as floats: a normal code's magnitude bits shifted into an fp32 with the
// exponent rebiased (+120) are its value; the 8 subnormal codes are integers times 2^-9.
inline __m512 fp8x16_to_ps(const uint8_t* p) {
  const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m512i mag = _mm512_and_si512(b, _mm512_set1_epi32(0x7f));
  const __m512 normal = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_slli_epi32(mag, 20), _mm512_set1_epi32(120 << 23)));
  const __m512 subnormal = _mm512_mul_ps(_mm512_cvtepi32_ps(mag), _mm512_set1_ps(0x1p-9f));
  __m512 f = _mm512_mask_blend_ps(_mm512_cmplt_epi32_mask(mag, _mm512_set1_epi32(8)), normal, subnormal);
  f = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(f), _mm512_slli_epi32(_mm512_and_si512(b, _mm512_set1_epi32(0x80)), 24)));
  return _mm512_mask_blend_ps(_mm512_cmpeq_epi32_mask(mag, _mm512_set1_epi32(0x7f)), f,
                              _mm512_set1_ps(std::numeric_limits<float>::quiet_NaN()));
}

inline __m512 int8x16_to_ps(const uint8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

// 32 floats as 32 bf16 at dst (the values here are exact in bf16: no rounding happens).
inline void store_bf16x32(__m512 lo, __m512 hi, uint16_t* dst) {
  _mm512_storeu_si512(dst, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)));
}

// One token of an 8-bit format as d_qk bf16 values, without its kv_scale (folded into q and
// out): fp8 and int8 codes, and fp8 times fp8_ds_mla's power-of-two group scales, are bf16
// values, so the tile the BF16 dot products read is the dequantized cache exactly.
// d_qk and d_c multiples of 32 (bf16_kernel_mismatch checks).
void token_to_bf16(const uint8_t* t, KvFormat format, int d_c, int d_r, uint16_t* dst) {
  if (format == KvFormat::int8) {
    for (int c = 0; c < d_c + d_r; c += 32) store_bf16x32(int8x16_to_ps(t + c), int8x16_to_ps(t + c + 16), dst + c);
    return;
  }
  if (format == KvFormat::fp8_e4m3) {
    for (int c = 0; c < d_c + d_r; c += 32) store_bf16x32(fp8x16_to_ps(t + c), fp8x16_to_ps(t + c + 16), dst + c);
    return;
  }
  const int groups = d_c / static_cast<int>(kKvScaleGroup);  // fp8_ds_mla
  for (int g = 0; g < groups; ++g) {
    float scale;
    std::memcpy(&scale, t + d_c + 4 * g, sizeof scale);
    const __m512 vs = _mm512_set1_ps(scale);
    for (int c = g * static_cast<int>(kKvScaleGroup); c < (g + 1) * static_cast<int>(kKvScaleGroup); c += 32)
      store_bf16x32(_mm512_mul_ps(fp8x16_to_ps(t + c), vs), _mm512_mul_ps(fp8x16_to_ps(t + c + 16), vs), dst + c);
  }
  std::memcpy(dst + d_c, t + d_c + 4 * groups, static_cast<size_t>(d_r) * sizeof(uint16_t));  // rope: bf16 already
}

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
  // choose_kernel sends only bf16 queries on a bf16 or 8-bit cache here; anything else would be
  // read as bf16 pairs and give wrong numbers silently.
  const bool eight_bit = a.kv_format == KvFormat::fp8_e4m3 || a.kv_format == KvFormat::int8 ||
                         a.kv_format == KvFormat::fp8_ds_mla;
  if (a.dtype != DType::bf16 || (a.kv_format != KvFormat::bf16 && !eight_bit) || (a.kv_fold && !eight_bit))
    fail(ErrorCode::internal, "cpu: the AVX-512 BF16 kernel was given a query or cache it does not read");
  const int rows = a.rows, d_v = a.d_v, tile = a.tile;
  const int kp = a.d_qk / 2;
  const int m_pad = (rows + 15) / 16 * 16;
  const int rows4 = (rows + 3) / 4 * 4;
  const int pairs = (tile + 1) / 2;

  s.q_packed.assign(static_cast<size_t>(kp) * m_pad, 0u);
  for (int r = 0; r < rows; ++r) {
    const auto* q = static_cast<const uint16_t*>(a.q_rows[r]);
    for (int k = 0; k < kp; ++k) {
      uint32_t pair = load_pair(q + 2 * k);
      if (a.kv_fold) {  // q_c * s_c, rounded to bf16 (the one rounding the 8-bit path adds)
        const uint16_t lo = float_to_bf16(bf16_to_float(q[2 * k]) * a.kv_fold[2 * k]);
        const uint16_t hi = float_to_bf16(bf16_to_float(q[2 * k + 1]) * a.kv_fold[2 * k + 1]);
        pair = static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
      }
      s.q_packed[static_cast<size_t>(k) * m_pad + r] = pair;
    }
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
  const size_t elem = dtype_size(kv_format_traits(a.kv_format).element);  // the cache's element size
  const int d_c = a.d_v, d_r = a.d_qk - a.d_v;
  if (eight_bit) s.kv_bf16.resize(static_cast<size_t>(tile) * a.d_qk);
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
      const char* token_ptr = static_cast<const char*>(a.kv) + off * static_cast<int64_t>(elem);
      if (eight_bit) {  // dequantized into this tile's bf16 rows
        uint16_t* row = s.kv_bf16.data() + static_cast<size_t>(j) * a.d_qk;
        token_to_bf16(reinterpret_cast<const uint8_t*>(token_ptr), a.kv_format, d_c, d_r, row);
        keys[j] = row;
      } else {
        keys[j] = reinterpret_cast<const uint16_t*>(token_ptr);
      }
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
    if (a.kv_fold)  // out_c * s_c: the value scale folded out of the tile
      for (int d = 0; d < d_v; ++d) out[d] *= a.kv_fold[d];
    a.lse[r] = s.row_max[static_cast<size_t>(r)] + std::log(sum);
  }
}

}  // namespace mla::cpu
#endif  // __AVX512BF16__
