#include "test_support.hpp"

#include <algorithm>

namespace mla::testing {

nlohmann::json config_for(const std::string& backend, const nlohmann::json& extra) {
  nlohmann::json c = {{"backend", backend}};
  c.update(extra);
  return c;
}

CaseResult run_and_compare(Device& device, HostInputs& in) {
  auto plan = device.plan(in.problem);
  auto schedule = plan->schedule(in.cache_seqlens.view());
  in.poison_outputs();
  CaseResult r;
  r.run = plan->run(in.args(), *schedule, nullptr, RunOptions{true});
  ReferenceOutput ref = reference_decode(in.problem, in.args());
  r.comparison = compare_to_reference(in.problem, ref, in.out.view(), in.lse.view());
  return r;
}

Comparison compare_to_unquantized(const HostInputs& in) {
  const HostInputs plain = in.unquantized();
  const ReferenceOutput ref = reference_decode(plain.problem, plain.args());
  return compare_to_reference(in.problem, ref, in.out.view(), in.lse.view(), quantization_tolerance(in.problem));
}

HostInputs context_shard(const HostInputs& full, int r, int n) {
  HostInputs s = full;
  const Problem& p = full.problem;
  s.problem.causal = p.causal && r == n - 1;
  s.block_table = HostTensor(DType::int32, {p.batch, p.max_blocks_per_seq});
  s.block_table.fill_nan();
  s.cache_seqlens = HostTensor(DType::int32, {p.batch});
  for (int64_t i = 0; i < p.batch; ++i) {
    const int64_t len = full.seqlens[static_cast<size_t>(i)], pages = (len + p.page_size - 1) / p.page_size;
    const int64_t first = r * pages / n, last = (r + 1) * pages / n;
    for (int64_t j = first; j < last; ++j)
      s.block_table.as<int32_t>()[i * p.max_blocks_per_seq + (j - first)] =
          full.block_table.as<int32_t>()[i * p.max_blocks_per_seq + j];
    s.cache_seqlens.as<int32_t>()[i] =
        static_cast<int32_t>(std::clamp<int64_t>(len - first * p.page_size, 0, (last - first) * p.page_size));
    s.seqlens[static_cast<size_t>(i)] = s.cache_seqlens.as<int32_t>()[i];
  }
  s.out = HostTensor(full.out.view().dtype, {p.batch, p.s_q, p.h_q, p.out_width()});
  s.lse = HostTensor(DType::fp32, {p.batch, p.h_q, p.s_q});
  s.poison_outputs();
  return s;
}

Problem small_problem(int64_t b, int64_t s_q, int64_t h_q, int64_t h_kv, bool causal, int64_t page_size, Variant variant,
                      DType dtype) {
  Problem p;
  p.variant = variant;
  p.batch = b;
  p.s_q = s_q;
  p.h_q = h_q;
  p.h_kv = h_kv;
  p.causal = causal;
  p.page_size = page_size;
  p.dtype = dtype;
  p.kv_format = *mla::plain_kv_format(dtype);
  return p;
}

}  // namespace mla::testing
