#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>

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

void check_merged_ranks(const HostInputs& full, const std::vector<HostInputs>& ranks) {
  const ReferenceOutput ref = reference_decode(full.problem, full.args());
  for (size_t r = 0; r < ranks.size(); ++r) {
    const Comparison c = compare_to_reference(full.problem, ref, ranks[r].out.view(), ranks[r].lse.view());
    INFO("rank " << r << ": " << c.summary());
    CHECK(c.passed);
    CHECK(std::memcmp(ranks[r].out.data(), ranks[0].out.data(), ranks[0].out.bytes()) == 0);
    CHECK(std::memcmp(ranks[r].lse.data(), ranks[0].lse.data(), ranks[0].lse.bytes()) == 0);
  }
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
