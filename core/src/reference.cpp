#include "mla/reference.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "mla/error.hpp"
#include "mla/host_tensor.hpp"
#include "mla/kv_cache.hpp"
#include "mla/validate.hpp"

namespace mla {

namespace {

// Element (i0, i1, i2, i3) of a strided view, as double.
double at(const TensorView& t, int64_t i0, int64_t i1, int64_t i2, int64_t i3 = 0) {
  int64_t off = i0 * t.strides[0] + i1 * t.strides[1] + i2 * t.strides[2];
  if (t.rank > 3) off += i3 * t.strides[3];
  return load_element(t.data, t.dtype, off);
}

constexpr int64_t kChunk = 256;  // keys converted to double at a time

}  // namespace

ReferenceOutput reference_decode(const Problem& p, const RunArgs& a) {
  validate_problem(p);
  validate_args(p, a, MemorySpace::host);
  const int32_t* seqlens = a.cache_seqlens.as<const int32_t>();
  validate_indices(p, seqlens, a.block_table.as<const int32_t>(), a.block_table.strides[0]);

  const int64_t b = p.batch, s_q = p.s_q, h_q = p.h_q, d_qk = p.d_qk(), d_v = p.d_v(), d_c = p.d_c;
  const int64_t group = p.heads_per_kv(), out_w = p.out_width();
  const double scale = p.effective_scale();
  ReferenceOutput ref;
  ref.out.assign(static_cast<size_t>(b * s_q * h_q * out_w), 0.0);
  ref.lse.assign(static_cast<size_t>(b * h_q * s_q), std::numeric_limits<double>::infinity());

  tbb::parallel_for(tbb::blocked_range<int64_t>(0, b * p.h_kv), [&](const tbb::blocked_range<int64_t>& range) {
    for (int64_t task = range.begin(); task != range.end(); ++task) {
      const int64_t i = task / p.h_kv, g = task % p.h_kv;
      const int64_t len = seqlens[i];
      const int64_t rows = group * s_q;  // (head in group, query token) pairs
      // Query rows in double: latent q, or concat(q_nope @ w_uk, q_rope) for absorb.
      std::vector<double> q(static_cast<size_t>(rows * d_qk));
      for (int64_t hh = 0; hh < group; ++hh)
        for (int64_t t = 0; t < s_q; ++t) {
          const int64_t h = g * group + hh;
          double* qr = &q[static_cast<size_t>((hh * s_q + t) * d_qk)];
          if (p.variant == Variant::latent) {
            for (int64_t d = 0; d < d_qk; ++d) qr[d] = at(a.q, i, t, h, d);
          } else {
            for (int64_t c = 0; c < d_c; ++c) {
              double sum = 0;
              for (int64_t n = 0; n < p.d_nope; ++n) sum += at(a.q_nope, i, t, h, n) * at(a.w_uk, h, n, c);
              qr[c] = sum;
            }
            for (int64_t r = 0; r < p.d_r; ++r) qr[d_c + r] = at(a.q_rope, i, t, h, r);
          }
        }

      // Two passes over the keys: scores (kept), then the weighted sum of values.
      std::vector<double> scores(static_cast<size_t>(rows * std::max<int64_t>(len, 1)));
      std::vector<double> kv(static_cast<size_t>(kChunk * d_qk));
      std::vector<float> keys(static_cast<size_t>(kChunk * d_qk));
      auto load_chunk = [&](int64_t start, int64_t count) {  // dequantized by the format's traits
        gather_keys_f32(p, a, i, g, start, count, keys.data());
        std::copy(keys.begin(), keys.begin() + count * d_qk, kv.begin());
      };
      for (int64_t start = 0; start < len; start += kChunk) {
        const int64_t count = std::min(kChunk, len - start);
        load_chunk(start, count);
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < count; ++j) {
            double dot = 0;
            for (int64_t d = 0; d < d_qk; ++d) dot += q[static_cast<size_t>(r * d_qk + d)] * kv[static_cast<size_t>(j * d_qk + d)];
            scores[static_cast<size_t>(r * len + start + j)] = scale * dot;
          }
      }
      std::vector<double> acc(static_cast<size_t>(rows * d_v), 0.0), mx(static_cast<size_t>(rows)), sum(static_cast<size_t>(rows), 0.0);
      std::vector<int64_t> visible(static_cast<size_t>(rows));
      for (int64_t r = 0; r < rows; ++r) {
        visible[static_cast<size_t>(r)] = visible_keys(p, len, r % s_q);
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < visible[static_cast<size_t>(r)]; ++j) m = std::max(m, scores[static_cast<size_t>(r * len + j)]);
        mx[static_cast<size_t>(r)] = m;
      }
      for (int64_t start = 0; start < len; start += kChunk) {
        const int64_t count = std::min(kChunk, len - start);
        load_chunk(start, count);
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < count && start + j < visible[static_cast<size_t>(r)]; ++j) {
            const double w = std::exp(scores[static_cast<size_t>(r * len + start + j)] - mx[static_cast<size_t>(r)]);
            sum[static_cast<size_t>(r)] += w;
            for (int64_t d = 0; d < d_v; ++d) acc[static_cast<size_t>(r * d_v + d)] += w * kv[static_cast<size_t>(j * d_qk + d)];
          }
      }
      for (int64_t hh = 0; hh < group; ++hh)
        for (int64_t t = 0; t < s_q; ++t) {
          const int64_t r = hh * s_q + t, h = g * group + hh;
          if (visible[static_cast<size_t>(r)] == 0) continue;  // out stays 0, lse +inf
          ref.lse[static_cast<size_t>((i * h_q + h) * s_q + t)] = mx[static_cast<size_t>(r)] + std::log(sum[static_cast<size_t>(r)]);
          double* o = &ref.out[static_cast<size_t>(((i * s_q + t) * h_q + h) * out_w)];
          const double inv = 1.0 / sum[static_cast<size_t>(r)];
          if (p.variant == Variant::latent) {
            for (int64_t d = 0; d < d_v; ++d) o[d] = acc[static_cast<size_t>(r * d_v + d)] * inv;
          } else {
            for (int64_t e = 0; e < p.d_vh; ++e) {
              double v = 0;
              for (int64_t c = 0; c < d_c; ++c) v += acc[static_cast<size_t>(r * d_v + c)] * inv * at(a.w_uv, h, c, e);
              o[e] = v;
            }
          }
        }
    }
  });
  return ref;
}

}  // namespace mla
