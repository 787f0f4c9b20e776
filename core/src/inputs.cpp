#include "mla/inputs.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "mla/error.hpp"

namespace mla {

std::vector<int32_t> make_seqlens(const InputSpec& spec, int64_t batch, int64_t s_q) {
  if (!spec.seqlens.empty()) {
    if (static_cast<int64_t>(spec.seqlens.size()) != batch)
      fail(ErrorCode::invalid_argument, "seqlens: expected " + std::to_string(batch) + " lengths, got " +
                                            std::to_string(spec.seqlens.size()));
    return spec.seqlens;
  }
  if (spec.seqlen < 0) fail(ErrorCode::invalid_argument, "seqlen: expected >= 0, got " + std::to_string(spec.seqlen));
  std::vector<int32_t> lens(static_cast<size_t>(batch), static_cast<int32_t>(spec.seqlen));
  if (spec.varlen) {
    std::mt19937_64 rng(spec.seed ^ 0x5eed1e45ULL);
    std::normal_distribution<double> normal(static_cast<double>(spec.seqlen), static_cast<double>(spec.seqlen) / 2.0);
    for (auto& len : lens) len = static_cast<int32_t>(std::max<double>(std::round(normal(rng)), static_cast<double>(s_q)));
  }
  return lens;
}

HostInputs make_random_inputs(const Problem& base, const InputSpec& spec) {
  HostInputs in;
  in.problem = base;
  Problem& p = in.problem;
  in.seqlens = make_seqlens(spec, p.batch, p.s_q);
  int64_t max_pages = 1, total_pages = 0;
  for (int32_t len : in.seqlens) {
    int64_t pages = (len + p.page_size - 1) / p.page_size;
    max_pages = std::max(max_pages, pages);
    total_pages += pages;
  }
  p.max_blocks_per_seq = std::max<int64_t>(max_pages + (spec.poison ? 1 : 0), 1);
  p.num_blocks = std::max<int64_t>(total_pages + spec.extra_blocks, 1);

  std::mt19937_64 rng(spec.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto fill = [&](HostTensor& t, double scale) {
    const int64_t n = t.view().numel();
    for (int64_t i = 0; i < n; ++i) t.set(i, scale * normal(rng));
  };

  const int64_t b = p.batch, s = p.s_q, h = p.h_q;
  if (p.variant == Variant::latent) {
    in.q = HostTensor(p.dtype, {b, s, h, p.d_qk()});
    fill(in.q, 1.0);
  } else {
    in.q_nope = HostTensor(p.dtype, {b, s, h, p.d_nope});
    in.q_rope = HostTensor(p.dtype, {b, s, h, p.d_r});
    in.w_uk = HostTensor(p.dtype, {h, p.d_nope, p.d_c});
    in.w_uv = HostTensor(p.dtype, {h, p.d_c, p.d_vh});
    fill(in.q_nope, 1.0);
    fill(in.q_rope, 1.0);
    fill(in.w_uk, 1.0 / std::sqrt(static_cast<double>(p.d_nope)));
    fill(in.w_uv, 1.0 / std::sqrt(static_cast<double>(p.d_c)));
  }

  // Physical blocks in shuffled order so that logical order never matches physical order.
  std::vector<int32_t> physical(static_cast<size_t>(p.num_blocks));
  std::iota(physical.begin(), physical.end(), 0);
  std::shuffle(physical.begin(), physical.end(), rng);

  in.kv_cache = HostTensor(p.kv.dtype, {p.num_blocks, p.page_size, p.h_kv, p.d_qk()});
  if (spec.poison) in.kv_cache.fill_nan();
  in.block_table = HostTensor(DType::int32, {b, p.max_blocks_per_seq});
  in.block_table.fill_nan();  // junk ids everywhere, then the used pages get real ones
  if (!spec.poison) std::fill_n(in.block_table.as<int32_t>(), b * p.max_blocks_per_seq, 0);

  const int64_t row = p.h_kv * p.d_qk();
  size_t next = 0;
  for (int64_t i = 0; i < b; ++i) {
    const int64_t len = in.seqlens[static_cast<size_t>(i)];
    const int64_t pages = (len + p.page_size - 1) / p.page_size;
    for (int64_t j = 0; j < pages; ++j) {
      int32_t block = physical[next++];
      in.block_table.as<int32_t>()[i * p.max_blocks_per_seq + j] = block;
      const int64_t valid = std::min(p.page_size, len - j * p.page_size);
      const int64_t base = static_cast<int64_t>(block) * p.page_size * row;
      for (int64_t k = 0; k < valid * row; ++k) in.kv_cache.set(base + k, normal(rng));
      if (!spec.poison)
        for (int64_t k = valid * row; k < p.page_size * row; ++k) in.kv_cache.set(base + k, normal(rng));
    }
  }
  if (!spec.poison)  // fill the spare blocks too so nothing is left uninitialised
    for (size_t k = next; k < physical.size(); ++k)
      for (int64_t e = 0; e < p.page_size * row; ++e)
        in.kv_cache.set(static_cast<int64_t>(physical[k]) * p.page_size * row + e, normal(rng));

  in.cache_seqlens = HostTensor(DType::int32, {b});
  std::copy(in.seqlens.begin(), in.seqlens.end(), in.cache_seqlens.as<int32_t>());
  in.out = HostTensor(p.dtype, {b, s, h, p.out_width()});
  in.lse = HostTensor(DType::fp32, {b, h, s});
  in.poison_outputs();
  return in;
}

RunArgs HostInputs::args() const {
  RunArgs a;
  a.q = q.view();
  a.q_nope = q_nope.view();
  a.q_rope = q_rope.view();
  a.w_uk = w_uk.view();
  a.w_uv = w_uv.view();
  a.kv_cache = kv_cache.view();
  a.block_table = block_table.view();
  a.cache_seqlens = cache_seqlens.view();
  a.out = out.view();
  a.lse = lse.view();
  return a;
}

void HostInputs::poison_outputs() {
  out.fill_nan();
  lse.fill_nan();
}

double HostInputs::mean_seqlen() const {
  if (seqlens.empty()) return 0;
  return std::accumulate(seqlens.begin(), seqlens.end(), 0.0) / static_cast<double>(seqlens.size());
}

Problem infer_problem_from_tensors(Problem p, const RunArgs& a) {
  auto need = [](const TensorView& t, const char* name, int rank) {
    if (t.rank != rank)
      fail(ErrorCode::invalid_argument,
           std::string(name) + ": expected rank " + std::to_string(rank) + ", got " + t.describe());
  };
  need(a.kv_cache, "kv_cache", 4);
  need(a.block_table, "block_table", 2);
  need(a.cache_seqlens, "cache_seqlens", 1);
  const TensorView& query = p.variant == Variant::latent ? a.q : a.q_nope;
  need(query, p.variant == Variant::latent ? "q" : "q_nope", 4);
  p.batch = query.shape[0];
  p.s_q = query.shape[1];
  p.h_q = query.shape[2];
  p.dtype = query.dtype;
  p.num_blocks = a.kv_cache.shape[0];
  p.page_size = a.kv_cache.shape[1];
  p.h_kv = a.kv_cache.shape[2];
  p.kv.dtype = a.kv_cache.dtype;
  p.max_blocks_per_seq = a.block_table.shape[1];
  if (p.variant == Variant::latent) {
    p.d_c = a.q.shape[3] - p.d_r;
  } else {
    need(a.w_uk, "w_uk", 3);
    need(a.w_uv, "w_uv", 3);
    need(a.q_rope, "q_rope", 4);
    p.d_nope = a.q_nope.shape[3];
    p.d_r = a.q_rope.shape[3];
    p.d_c = a.w_uk.shape[2];
    p.d_vh = a.w_uv.shape[2];
  }
  return p;
}

}  // namespace mla
