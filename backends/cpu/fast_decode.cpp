#include "fast_decode.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include "mla/error.hpp"
#include "mla/host_tensor.hpp"

namespace mla::cpu {

namespace {

constexpr int64_t kMaxRowsPerTask = 128;  // query rows sharing one pass over the keys
constexpr int64_t kMinChunkTokens = 256;  // a split shorter than this costs more than it balances
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

int64_t heads_per_task(const Problem& p) {
  return std::clamp<int64_t>(kMaxRowsPerTask / p.s_q, 1, p.heads_per_kv());
}

int64_t target_tasks(int threads) { return 4 * static_cast<int64_t>(threads); }

// Offset of element (i0, i1, i2, 0) in a rank-4 view.
int64_t offset4(const TensorView& t, int64_t i0, int64_t i1, int64_t i2) {
  return i0 * t.strides[0] + i1 * t.strides[1] + i2 * t.strides[2];
}

const char* element_ptr(const TensorView& t, int64_t offset) {
  return static_cast<const char*>(t.data) + offset * static_cast<int64_t>(dtype_size(t.dtype));
}

// The kv_scale of a per-tensor (fp8_e4m3) or per-channel (int8) format as d_qk factors that the
// task kernel folds into q and out (TaskArgs::kv_fold); empty for formats without one.
std::vector<float> kv_fold_factors(const Problem& p, const RunArgs& a) {
  const KvScaleKind kind = p.kv().scale;
  if (kind != KvScaleKind::per_tensor && kind != KvScaleKind::per_channel) return {};
  const auto* s = static_cast<const float*>(a.kv_scale.data);
  const int64_t stride = a.kv_scale.rank == 1 ? a.kv_scale.strides[0] : 1;
  std::vector<float> fold(static_cast<size_t>(p.d_qk()));
  for (int64_t c = 0; c < p.d_qk(); ++c) fold[static_cast<size_t>(c)] = kind == KvScaleKind::per_tensor ? s[0] : s[c * stride];
  return fold;
}

// q_latent = concat(q_nope @ w_uk, q_rope), rounded to the problem dtype like the query it replaces.
void absorb_queries(const Problem& p, const RunArgs& a, Workspace& ws) {
  const int64_t b = p.batch, s = p.s_q, d_c = p.d_c;
  if (!ws.q_latent.defined() || ws.q_latent.view().numel() != b * s * p.h_q * p.d_qk())
    ws.q_latent = HostTensor(p.dtype, {b, s, p.h_q, p.d_qk()});
  HostTensor& ql = ws.q_latent;
  tbb::parallel_for(int64_t{0}, p.h_q, [&](int64_t h) {
    std::vector<float> w(static_cast<size_t>(p.d_nope * d_c)), acc(static_cast<size_t>(d_c));
    for (int64_t n = 0; n < p.d_nope; ++n)
      for (int64_t c = 0; c < d_c; ++c)
        w[static_cast<size_t>(n * d_c + c)] = static_cast<float>(load_element(a.w_uk.data, a.w_uk.dtype, h * a.w_uk.strides[0] + n * a.w_uk.strides[1] + c));
    for (int64_t i = 0; i < b; ++i)
      for (int64_t t = 0; t < s; ++t) {
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int64_t n = 0; n < p.d_nope; ++n) {
          const float qn = static_cast<float>(load_element(a.q_nope.data, a.q_nope.dtype, offset4(a.q_nope, i, t, h) + n));
          const float* wr = &w[static_cast<size_t>(n * d_c)];
          for (int64_t c = 0; c < d_c; ++c) acc[static_cast<size_t>(c)] += qn * wr[c];
        }
        const int64_t base = ((i * s + t) * p.h_q + h) * p.d_qk();
        for (int64_t c = 0; c < d_c; ++c) ql.set(base + c, acc[static_cast<size_t>(c)]);
        for (int64_t r = 0; r < p.d_r; ++r)
          ql.set(base + d_c + r, load_element(a.q_rope.data, a.q_rope.dtype, offset4(a.q_rope, i, t, h) + r));
      }
  });
}

// out[h] = o_latent[h] @ w_uv[h]
void project_outputs(const Problem& p, const RunArgs& a, const Workspace& ws) {
  const int64_t b = p.batch, s = p.s_q, d_c = p.d_c, d_vh = p.d_vh;
  tbb::parallel_for(int64_t{0}, p.h_q, [&](int64_t h) {
    std::vector<float> w(static_cast<size_t>(d_c * d_vh)), acc(static_cast<size_t>(d_vh));
    for (int64_t c = 0; c < d_c; ++c)
      for (int64_t e = 0; e < d_vh; ++e)
        w[static_cast<size_t>(c * d_vh + e)] = static_cast<float>(load_element(a.w_uv.data, a.w_uv.dtype, h * a.w_uv.strides[0] + c * a.w_uv.strides[1] + e));
    for (int64_t i = 0; i < b; ++i)
      for (int64_t t = 0; t < s; ++t) {
        std::fill(acc.begin(), acc.end(), 0.0f);
        const float* o = &ws.o_latent[static_cast<size_t>(((i * s + t) * p.h_q + h) * d_c)];
        for (int64_t c = 0; c < d_c; ++c) {
          const float* wr = &w[static_cast<size_t>(c * d_vh)];
          for (int64_t e = 0; e < d_vh; ++e) acc[static_cast<size_t>(e)] += o[c] * wr[e];
        }
        for (int64_t e = 0; e < d_vh; ++e) store_element(a.out, offset4(a.out, i, t, h) + e, acc[static_cast<size_t>(e)]);
      }
  });
}

}  // namespace

int64_t rows_per_task(const Problem& p) { return heads_per_task(p) * p.s_q; }

bool SplitPlan::matches(const int32_t* lens) const {
  return std::equal(seqlens.begin(), seqlens.end(), lens);
}

std::string SplitPlan::describe() const {
  int64_t split_seqs = std::count_if(splits.begin(), splits.end(), [](int32_t s) { return s > 1; });
  std::ostringstream os;
  os << "cpu: " << seqlens.size() << " sequences, " << heads_per_task << " heads per task, ";
  if (split_seqs == 0) os << "no KV splits";
  else os << split_seqs << " sequences split into chunks of " << chunk_tokens << " keys (" << partial_slots << " partials)";
  return os.str();
}

SplitPlan plan_splits(const Problem& p, const int32_t* seqlens, const CpuConfig& config, int threads) {
  SplitPlan plan;
  plan.seqlens.assign(seqlens, seqlens + p.batch);
  plan.heads_per_task = heads_per_task(p);
  const int64_t head_chunks = p.h_kv * ((p.heads_per_kv() + plan.heads_per_task - 1) / plan.heads_per_task);
  const int64_t base_tasks = p.batch * head_chunks;
  int64_t total_tokens = 0;
  for (int64_t i = 0; i < p.batch; ++i) total_tokens += seqlens[i];
  const int64_t tile = config.kv_tile_tokens;
  const int64_t want = target_tasks(threads);
  // Split only when the unsplit tasks cannot keep every thread busy.
  int64_t chunk = std::numeric_limits<int32_t>::max();
  if (base_tasks < want && total_tokens > 0) {
    const int64_t splits_wanted = (want + base_tasks - 1) / base_tasks * p.batch;
    chunk = std::max(kMinChunkTokens, (total_tokens + splits_wanted - 1) / splits_wanted);
    chunk = (chunk + tile - 1) / tile * tile;
  }
  plan.chunk_tokens = chunk;
  plan.splits.resize(static_cast<size_t>(p.batch));
  plan.partial_index.assign(static_cast<size_t>(p.batch), -1);
  for (int64_t i = 0; i < p.batch; ++i) {
    const int64_t n = std::max<int64_t>(1, (seqlens[i] + chunk - 1) / chunk);
    plan.splits[static_cast<size_t>(i)] = static_cast<int32_t>(n);
    if (n > 1) {
      plan.partial_index[static_cast<size_t>(i)] = plan.partial_slots;
      plan.partial_slots += n;
    }
  }
  return plan;
}

size_t fast_workspace_bytes(const Problem& p, const CpuConfig&, int threads) {
  // Splits happen only when batch tasks are fewer than target_tasks, so slots stay below it plus b.
  const size_t slots = static_cast<size_t>(target_tasks(threads) + p.batch);
  size_t bytes = slots * static_cast<size_t>(p.h_q * p.s_q) * static_cast<size_t>(p.d_v() + 1) * sizeof(float);
  if (p.variant == Variant::absorb)
    bytes += static_cast<size_t>(p.batch * p.s_q * p.h_q) *
             (static_cast<size_t>(p.d_qk()) * dtype_size(p.dtype) + static_cast<size_t>(p.d_c) * sizeof(float));
  return bytes;
}

void fast_decode(const Problem& p, const RunArgs& args, const SplitPlan& split, Workspace& ws, const CpuConfig& config,
                 int threads, TaskKernel kernel) {
  const int64_t hpt = split.heads_per_task, group = p.heads_per_kv();
  const int64_t chunks_per_kv = (group + hpt - 1) / hpt;
  const int64_t d_v = p.d_v();
  const bool absorb = p.variant == Variant::absorb;

  tbb::task_arena arena(threads);
  arena.execute([&] {
    if (absorb) {
      absorb_queries(p, args, ws);
      ws.o_latent.resize(static_cast<size_t>(p.batch * p.s_q * p.h_q * p.d_c));
    }
    const TensorView q = absorb ? ws.q_latent.view() : args.q;
    const std::vector<float> kv_fold = kv_fold_factors(p, args);
    // A non-finite kv_scale makes every dequantized key non-finite in the reference, so every
    // row that sees a key is NaN, as with a non-finite query (the contract below).
    const bool fold_nonfinite =
        std::any_of(kv_fold.begin(), kv_fold.end(), [](float x) { return !std::isfinite(x); });
    ws.partial_out.resize(static_cast<size_t>(split.partial_slots * p.h_q * p.s_q * d_v));
    ws.partial_lse.resize(static_cast<size_t>(split.partial_slots * p.h_q * p.s_q));

    // Task list: (sequence, kv head, head chunk, split).
    struct Task {
      int64_t seq, kv_head, chunk, split;
    };
    std::vector<Task> tasks;
    for (int64_t i = 0; i < p.batch; ++i)
      for (int64_t g = 0; g < p.h_kv; ++g)
        for (int64_t c = 0; c < chunks_per_kv; ++c)
          for (int64_t s = 0; s < split.splits[static_cast<size_t>(i)]; ++s) tasks.push_back({i, g, c, s});
    // Longest first, so the tail of the parallel loop holds short tasks.
    std::stable_sort(tasks.begin(), tasks.end(), [&](const Task& x, const Task& y) {
      auto work = [&](const Task& t) {
        return std::min<int64_t>(split.chunk_tokens, split.seqlens[static_cast<size_t>(t.seq)] - t.split * split.chunk_tokens);
      };
      return work(x) > work(y);
    });

    tbb::enumerable_thread_specific<TaskScratch> scratch;
    tbb::parallel_for(size_t{0}, tasks.size(), [&](size_t k) {
      const Task& task = tasks[k];
      const int64_t len = split.seqlens[static_cast<size_t>(task.seq)];
      const int64_t h0 = task.kv_head * group + task.chunk * hpt;
      const int64_t heads = std::min(hpt, group - task.chunk * hpt);
      const int rows = static_cast<int>(heads * p.s_q);
      std::vector<const void*> q_rows(static_cast<size_t>(rows));
      std::vector<int64_t> visible(static_cast<size_t>(rows));
      std::vector<float> out(static_cast<size_t>(rows * d_v)), lse(static_cast<size_t>(rows));
      for (int64_t hh = 0; hh < heads; ++hh)
        for (int64_t t = 0; t < p.s_q; ++t) {
          const size_t r = static_cast<size_t>(hh * p.s_q + t);
          q_rows[r] = element_ptr(q, offset4(q, task.seq, t, h0 + hh));
          visible[r] = visible_keys(p, len, t);
        }
      TaskArgs ta;
      ta.rows = rows;
      ta.q_rows = q_rows.data();
      ta.visible = visible.data();
      ta.begin = std::min<int64_t>(task.split * split.chunk_tokens, len);
      ta.end = std::min<int64_t>(ta.begin + split.chunk_tokens, len);
      ta.block_row = args.block_table.as<const int32_t>() + task.seq * args.block_table.strides[0];
      ta.kv = args.kv_cache.data;
      ta.page_size = p.page_size;
      ta.block_stride = args.kv_cache.strides[0];
      ta.token_stride = args.kv_cache.strides[1];
      ta.head_offset = task.kv_head * args.kv_cache.strides[2];
      ta.d_qk = static_cast<int>(p.d_qk());
      ta.d_v = static_cast<int>(d_v);
      ta.tile = static_cast<int>(config.kv_tile_tokens);
      ta.scale = p.effective_scale();
      ta.dtype = p.dtype;
      ta.kv_format = p.kv_format;
      ta.kv_fold = kv_fold.empty() ? nullptr : kv_fold.data();
      ta.out = out.data();
      ta.lse = lse.data();
      kernel(ta, scratch.local());
      // The contract (the float64 reference): a query row holding a NaN or an Inf gives NaN out
      // and lse once it sees a key. The online softmax would not say so: its running max skips
      // NaN scores, so such a row looks like one that saw nothing (out 0, lse +inf).
      for (int r = 0; r < rows; ++r)
        if (ta.begin < std::min(ta.end, visible[static_cast<size_t>(r)]) &&
            (fold_nonfinite || has_nonfinite(q_rows[static_cast<size_t>(r)], q.dtype, p.d_qk()))) {
          std::fill_n(&out[static_cast<size_t>(r) * static_cast<size_t>(d_v)], d_v, kNaN);
          lse[static_cast<size_t>(r)] = kNaN;
        }

      const int64_t slot = split.partial_index[static_cast<size_t>(task.seq)];
      for (int64_t hh = 0; hh < heads; ++hh)
        for (int64_t t = 0; t < p.s_q; ++t) {
          const size_t r = static_cast<size_t>(hh * p.s_q + t);
          const int64_t h = h0 + hh;
          const float* o = &out[r * static_cast<size_t>(d_v)];
          if (slot >= 0) {  // partial: merged below
            const int64_t idx = ((slot + task.split) * p.h_q + h) * p.s_q + t;
            std::copy(o, o + d_v, &ws.partial_out[static_cast<size_t>(idx * d_v)]);
            ws.partial_lse[static_cast<size_t>(idx)] = lse[r];
            continue;
          }
          const bool empty = lse[r] == -std::numeric_limits<float>::infinity();
          args.lse.as<float>()[task.seq * args.lse.strides[0] + h * args.lse.strides[1] + t * args.lse.strides[2]] =
              empty ? std::numeric_limits<float>::infinity() : lse[r];
          if (absorb) {
            float* dst = &ws.o_latent[static_cast<size_t>(((task.seq * p.s_q + t) * p.h_q + h) * d_v)];
            for (int64_t d = 0; d < d_v; ++d) dst[d] = empty ? 0.0f : o[d];
          } else {
            const int64_t base = offset4(args.out, task.seq, t, h);
            for (int64_t d = 0; d < d_v; ++d) store_element(args.out, base + d, empty ? 0.0 : o[d]);
          }
        }
    });

    // Merge the partials of split sequences: lse = log sum exp(lse_s), out = sum exp(lse_s - lse) o_s.
    tbb::parallel_for(int64_t{0}, p.batch * p.h_q, [&](int64_t ih) {
      const int64_t i = ih / p.h_q, h = ih % p.h_q;
      const int64_t slot = split.partial_index[static_cast<size_t>(i)];
      if (slot < 0) return;
      const int64_t n = split.splits[static_cast<size_t>(i)];
      std::vector<float> merged(static_cast<size_t>(d_v));
      for (int64_t t = 0; t < p.s_q; ++t) {
        float mx = -std::numeric_limits<float>::infinity();
        bool nan = false;  // a NaN partial (a non-finite query) makes the row NaN, as in one piece
        for (int64_t s = 0; s < n; ++s) {
          const float x = ws.partial_lse[static_cast<size_t>(((slot + s) * p.h_q + h) * p.s_q + t)];
          nan = nan || std::isnan(x);
          mx = std::max(mx, x);
        }
        std::fill(merged.begin(), merged.end(), nan ? kNaN : 0.0f);
        float total_lse = nan ? kNaN : std::numeric_limits<float>::infinity();
        if (!nan && mx != -std::numeric_limits<float>::infinity()) {
          double sum = 0;
          for (int64_t s = 0; s < n; ++s) sum += std::exp(ws.partial_lse[static_cast<size_t>(((slot + s) * p.h_q + h) * p.s_q + t)] - mx);
          total_lse = mx + static_cast<float>(std::log(sum));
          for (int64_t s = 0; s < n; ++s) {
            const int64_t idx = ((slot + s) * p.h_q + h) * p.s_q + t;
            const float w = std::exp(ws.partial_lse[static_cast<size_t>(idx)] - total_lse);
            if (w == 0.0f) continue;
            const float* o = &ws.partial_out[static_cast<size_t>(idx * d_v)];
            for (int64_t d = 0; d < d_v; ++d) merged[static_cast<size_t>(d)] += w * o[d];
          }
        }
        args.lse.as<float>()[i * args.lse.strides[0] + h * args.lse.strides[1] + t * args.lse.strides[2]] = total_lse;
        if (absorb) {
          std::copy(merged.begin(), merged.end(), &ws.o_latent[static_cast<size_t>(((i * p.s_q + t) * p.h_q + h) * d_v)]);
        } else {
          const int64_t base = offset4(args.out, i, t, h);
          for (int64_t d = 0; d < d_v; ++d) store_element(args.out, base + d, merged[static_cast<size_t>(d)]);
        }
      }
    });

    if (absorb) project_outputs(p, args, ws);
  });
}

}  // namespace mla::cpu
