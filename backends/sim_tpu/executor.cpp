#include "executor.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>

#include "mla/dtype.hpp"
#include "mla/host_tensor.hpp"
#include "mla/kv_cache.hpp"
#include "tile_math.hpp"

namespace mla::sim_tpu {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kPosInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Scratch {
  std::vector<float> q, kv, scores, acc, row_max, row_sum, weight_row;
  std::vector<int64_t> visible;
};

const char* element(const TensorView& t, int64_t offset) {
  return static_cast<const char*>(t.data) + offset * static_cast<int64_t>(dtype_size(t.dtype));
}
int64_t offset4(const TensorView& t, int64_t a, int64_t b, int64_t c) {
  return a * t.strides[0] + b * t.strides[1] + c * t.strides[2];
}

class Executor {
 public:
  Executor(const Problem& p, const RunArgs& a, const StepWork& step, PartialBuffers& partials)
      : p_(p), a_(a), step_(step), partials_(partials), math_(tile_math_for_this_cpu()) {}

  void run() {
    std::vector<const WorkItem*> items;
    std::vector<const CombineItem*> combines;
    int64_t rows = 0;
    for (const ChipWork& chip : step_.chips) {
      for (const WorkItem& w : chip.items) items.push_back(&w);
      for (const CombineItem& m : chip.combines) combines.push_back(&m);
      rows = std::max<int64_t>(rows, chip.head_count * p_.s_q);
    }
    if (step_.partial_slots > 0) {
      partials_.rows_per_slot = rows;
      partials_.out.resize(static_cast<size_t>(step_.partial_slots * rows * p_.d_v()));
      partials_.lse.resize(static_cast<size_t>(step_.partial_slots * rows));
    }
    // Longest first, so the tail of the parallel loop holds short items.
    std::stable_sort(items.begin(), items.end(), [](const WorkItem* x, const WorkItem* y) {
      return static_cast<int64_t>(x->end - x->begin) * x->head_count > static_cast<int64_t>(y->end - y->begin) * y->head_count;
    });
    tbb::parallel_for(size_t{0}, items.size(), [&](size_t i) { run_item(*items[i], scratch_.local()); });
    tbb::parallel_for(size_t{0}, combines.size(), [&](size_t i) { run_combine(*combines[i], scratch_.local()); });
  }

 private:
  // Query rows of heads [h0, h1) (one KV head), row = (h - h0) * s_q + t, in fp32.
  void load_queries(int32_t seq, int64_t h0, int64_t h1, Scratch& s) {
    const int64_t d_qk = p_.d_qk(), rows = (h1 - h0) * p_.s_q;
    s.q.assign(static_cast<size_t>(rows * d_qk), 0.0f);
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t t = 0; t < p_.s_q; ++t) {
        float* row = &s.q[static_cast<size_t>(((h - h0) * p_.s_q + t) * d_qk)];
        if (p_.variant == Variant::latent) {
          convert_to_f32(element(a_.q, offset4(a_.q, seq, t, h)), p_.dtype, d_qk, row);
          continue;
        }
        // Absorb: q_latent = q_nope @ w_uk[h] (BDC, fp32), then the rotary part.
        std::vector<float> nope(static_cast<size_t>(p_.d_nope));
        convert_to_f32(element(a_.q_nope, offset4(a_.q_nope, seq, t, h)), p_.dtype, p_.d_nope, nope.data());
        s.weight_row.resize(static_cast<size_t>(std::max(p_.d_c, p_.d_vh)));
        math_.project(nope.data(), static_cast<int>(p_.d_nope), element(a_.w_uk, h * a_.w_uk.strides[0]),
                      a_.w_uk.strides[1], p_.dtype, static_cast<int>(p_.d_c), row, s.weight_row.data());
        convert_to_f32(element(a_.q_rope, offset4(a_.q_rope, seq, t, h)), p_.dtype, p_.d_r, row + p_.d_c);
      }
  }

  // Keys [n0, n0 + n) of KV head g, gathered through the block table into fp32 rows: every
  // format through the tile math's Highway dequantization (plain formats are only widened).
  void load_keys(int32_t seq, int64_t g, int64_t n0, int64_t n, Scratch& s) {
    const int64_t d_qk = p_.d_qk();
    const auto* kv_scale = static_cast<const float*>(a_.kv_scale.data);
    const int32_t* blocks = a_.block_table.as<const int32_t>() + seq * a_.block_table.strides[0];
    for (int64_t j = 0; j < n; ++j) {
      const int64_t token = n0 + j;
      math_.dequantize_token(kv_token(a_.kv_cache, blocks[token / p_.page_size], token % p_.page_size, g), p_.kv_format,
                             kv_scale, p_.d_c, p_.d_r, &s.kv[static_cast<size_t>(j * d_qk)]);
    }
  }

  void run_item(const WorkItem& w, Scratch& s) {
    const int64_t group = p_.heads_per_kv();
    for (int64_t h0 = w.head_begin; h0 < w.head_begin + w.head_count;) {
      const int64_t h1 = std::min<int64_t>(w.head_begin + w.head_count, (h0 / group + 1) * group);
      attend(w, h0, h1, h0 / group, s);
      h0 = h1;
    }
  }

  // Online softmax over the item's keys, one kv_tile_tokens tile at a time.
  void attend(const WorkItem& w, int64_t h0, int64_t h1, int64_t g, Scratch& s) {
    const int64_t rows = (h1 - h0) * p_.s_q, d_qk = p_.d_qk(), d_v = p_.d_v();
    const int64_t tile = step_.tiling.kv_tile_tokens;
    const int32_t len = a_.cache_seqlens.as<const int32_t>()[w.seq];
    load_queries(w.seq, h0, h1, s);
    s.kv.resize(static_cast<size_t>(tile * d_qk));
    s.scores.resize(static_cast<size_t>(rows * tile));
    s.acc.assign(static_cast<size_t>(rows * d_v), 0.0f);
    s.row_max.assign(static_cast<size_t>(rows), kNegInf);
    s.row_sum.assign(static_cast<size_t>(rows), 0.0f);
    s.visible.resize(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) s.visible[static_cast<size_t>(r)] = visible_keys(p_, len, r % p_.s_q);
    const float scale = p_.effective_scale();

    for (int64_t n0 = w.begin; n0 < w.end; n0 += tile) {
      const int64_t n = std::min<int64_t>(tile, w.end - n0);
      load_keys(w.seq, g, n0, n, s);
      math_.scores(s.q.data(), static_cast<int>(rows), s.kv.data(), static_cast<int>(n), static_cast<int>(d_qk), scale,
                   s.scores.data());
      for (int64_t r = 0; r < rows; ++r) {
        float* sr = &s.scores[static_cast<size_t>(r * n)];
        const int64_t visible = s.visible[static_cast<size_t>(r)];
        float tile_max = kNegInf;
        for (int64_t j = 0; j < n; ++j) {
          if (n0 + j >= visible) sr[j] = kNegInf;  // causal mask
          tile_max = std::max(tile_max, sr[j]);
        }
        const float old_max = s.row_max[static_cast<size_t>(r)];
        const float new_max = std::max(old_max, tile_max);
        if (new_max == kNegInf) {  // nothing visible yet: probabilities are all zero
          std::fill(sr, sr + n, 0.0f);
          continue;
        }
        const float alpha = std::exp(old_max - new_max);
        float sum = 0;
        for (int64_t j = 0; j < n; ++j) {
          sr[j] = std::exp(sr[j] - new_max);
          sum += sr[j];
        }
        if (alpha != 1.0f) {
          float* acc = &s.acc[static_cast<size_t>(r * d_v)];
          for (int64_t c = 0; c < d_v; ++c) acc[c] *= alpha;
        }
        s.row_sum[static_cast<size_t>(r)] = s.row_sum[static_cast<size_t>(r)] * alpha + sum;
        s.row_max[static_cast<size_t>(r)] = new_max;
      }
      math_.accumulate(s.scores.data(), static_cast<int>(rows), static_cast<int>(n), s.kv.data(),
                       static_cast<int>(d_qk), static_cast<int>(d_v), s.acc.data());
    }

    for (int64_t r = 0; r < rows; ++r) {
      const int64_t h = h0 + r / p_.s_q, t = r % p_.s_q;
      const float sum = s.row_sum[static_cast<size_t>(r)];
      float* acc = &s.acc[static_cast<size_t>(r * d_v)];
      const bool empty = sum == 0.0f;
      const float inv = empty ? 0.0f : 1.0f / sum;
      for (int64_t c = 0; c < d_v; ++c) acc[c] *= inv;
      float lse = empty ? kNegInf : s.row_max[static_cast<size_t>(r)] + std::log(sum);
      // The contract (the float64 reference): a query row holding a NaN or an Inf gives NaN out
      // and lse once it sees a key. The online softmax above would not: its running max skips
      // NaN scores, so such a row looks like one that saw nothing (out 0, lse +inf).
      if (w.begin < std::min<int64_t>(w.end, s.visible[static_cast<size_t>(r)]) &&
          has_nonfinite(&s.q[static_cast<size_t>(r * d_qk)], DType::fp32, d_qk)) {
        std::fill(acc, acc + d_v, kNaN);
        lse = kNaN;
      }
      if (w.partial_slot >= 0) {
        const int64_t row = w.partial_slot * partials_.rows_per_slot + (h - w.head_begin) * p_.s_q + t;
        std::copy(acc, acc + d_v, &partials_.out[static_cast<size_t>(row * d_v)]);
        partials_.lse[static_cast<size_t>(row)] = lse;
      } else {
        write_output(w.seq, h, t, acc, empty && !std::isnan(lse) ? kPosInf : lse, s);
      }
    }
  }

  // out (projected by w_uv in absorb) and lse of one query row.
  void write_output(int32_t seq, int64_t h, int64_t t, const float* o_latent, float lse, Scratch& s) {
    a_.lse.as<float>()[seq * a_.lse.strides[0] + h * a_.lse.strides[1] + t * a_.lse.strides[2]] = lse;
    const int64_t base = offset4(a_.out, seq, t, h);
    if (p_.variant == Variant::latent) {
      for (int64_t c = 0; c < p_.d_v(); ++c) store_element(a_.out, base + c, o_latent[c]);
      return;
    }
    std::vector<float> projected(static_cast<size_t>(p_.d_vh), 0.0f);
    s.weight_row.resize(static_cast<size_t>(std::max(p_.d_c, p_.d_vh)));
    math_.project(o_latent, static_cast<int>(p_.d_c), element(a_.w_uv, h * a_.w_uv.strides[0]), a_.w_uv.strides[1],
                  p_.dtype, static_cast<int>(p_.d_vh), projected.data(), s.weight_row.data());
    for (int64_t c = 0; c < p_.d_vh; ++c) store_element(a_.out, base + c, projected[static_cast<size_t>(c)]);
  }

  // Slices merged in order with a running max, as the combining core does one partial at a time.
  void run_combine(const CombineItem& m, Scratch& s) {
    const int64_t d_v = p_.d_v();
    s.acc.resize(static_cast<size_t>(d_v));
    for (int64_t h = m.head_begin; h < m.head_begin + m.head_count; ++h)
      for (int64_t t = 0; t < p_.s_q; ++t) {
        const int64_t row_in_slot = (h - m.head_begin) * p_.s_q + t;
        float run_max = kNegInf, run_sum = 0;
        bool nan = false;  // a NaN slice (a non-finite query) makes the row NaN, as in one piece
        std::fill(s.acc.begin(), s.acc.end(), 0.0f);
        for (int32_t k = 0; k < m.slots; ++k) {
          const int64_t row = (m.first_slot + k) * partials_.rows_per_slot + row_in_slot;
          const float lse = partials_.lse[static_cast<size_t>(row)];
          nan = nan || std::isnan(lse);
          if (lse == kNegInf || nan) continue;
          const float new_max = std::max(run_max, lse);
          const float alpha = std::exp(run_max - new_max), beta = std::exp(lse - new_max);
          const float* o = &partials_.out[static_cast<size_t>(row * d_v)];
          for (int64_t c = 0; c < d_v; ++c) s.acc[static_cast<size_t>(c)] = s.acc[static_cast<size_t>(c)] * alpha + o[c] * beta;
          run_sum = run_sum * alpha + beta;
          run_max = new_max;
        }
        const bool empty = run_sum == 0.0f;
        const float inv = nan ? kNaN : empty ? 0.0f : 1.0f / run_sum;
        for (float& x : s.acc) x *= inv;
        write_output(m.seq, h, t, s.acc.data(), nan ? kNaN : empty ? kPosInf : run_max + std::log(run_sum), s);
      }
  }

  const Problem& p_;
  const RunArgs& a_;
  const StepWork& step_;
  PartialBuffers& partials_;
  const TileMath& math_;
  tbb::enumerable_thread_specific<Scratch> scratch_;
};

}  // namespace

void execute_step(const Problem& problem, const RunArgs& args, const StepWork& step, PartialBuffers& partials) {
  Executor(problem, args, step, partials).run();
}

}  // namespace mla::sim_tpu
