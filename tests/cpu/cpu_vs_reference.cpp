// The CPU fast path against the float64 reference on shapes beyond the grid (long splits,
// large batches, other dtypes, absorb), with poisoned rows past each length and junk
// block-table entries.
#include <catch2/catch.hpp>

#include "test_support.hpp"

using namespace mla;
using namespace mla::testing;

namespace {

void check_case(Device& device, const Problem& p, const InputSpec& spec) {
  HostInputs in = make_random_inputs(p, spec);
  CaseResult r = run_and_compare(device, in);
  INFO(in.problem.describe() << " lengths[0]=" << in.seqlens[0] << " kernel=" << r.run.kernel);
  INFO(r.comparison.summary());
  CHECK(r.comparison.passed);
}

}  // namespace

// The DESIGN 7 grid runs on every SIMD target in simd_targets.cpp.

TEST_CASE("cpu fast path splits a long single sequence and still matches", "[cpu]") {
  auto device = open_device(config_for("cpu"));
  InputSpec spec;
  spec.seqlens = {4096};
  spec.seed = 7;
  HostInputs in = make_random_inputs(small_problem(1, 1, 16, 1, false, 64), spec);
  auto plan = device->plan(in.problem);
  auto schedule = plan->schedule(in.cache_seqlens.view());
  CHECK_THAT(schedule->describe(), Catch::Contains("split"));
  CaseResult r = run_and_compare(*device, in);
  INFO(r.comparison.summary());
  CHECK(r.comparison.passed);
}

TEST_CASE("cpu fast path: large batch, wide heads, varlen", "[cpu]") {
  auto device = open_device(config_for("cpu"));
  for (int64_t b : {64, 128}) {
    InputSpec spec;
    spec.seqlen = 48;
    spec.varlen = true;
    spec.seed = static_cast<uint64_t>(b);
    HostInputs in = make_random_inputs(small_problem(b, 1, 16, 1, false, 64), spec);
    CaseResult r = run_and_compare(*device, in);
    INFO(r.comparison.summary());
    CHECK(r.comparison.passed);
  }
}

TEST_CASE("cpu fp16 and fp32 inputs match the reference", "[cpu]") {
  auto device = open_device(config_for("cpu"));
  for (DType dtype : {DType::fp16, DType::fp32}) {
    InputSpec spec;
    spec.seqlen = 77;
    spec.varlen = true;
    spec.seed = 31;
    HostInputs in = make_random_inputs(small_problem(2, 2, 8, 1, true, 16, Variant::latent, dtype), spec);
    CaseResult r = run_and_compare(*device, in);
    INFO(dtype_name(dtype) << " " << r.comparison.summary());
    CHECK(r.comparison.passed);
  }
}

TEST_CASE("cpu fused absorb matches the reference and equals latent attention on the absorbed query", "[cpu]") {
  auto device = open_device(config_for("cpu"));
  InputSpec spec;
  spec.seqlen = 100;
  spec.varlen = true;
  spec.seed = 5;
  for (bool causal : {false, true}) {
    HostInputs in = make_random_inputs(small_problem(2, 2, 8, 1, causal, 32, Variant::absorb), spec);
    CaseResult r = run_and_compare(*device, in);
    INFO(r.comparison.summary());
    CHECK(r.comparison.passed);
  }
}
