// Outputs of the simulated NPU against the float64 reference, for every partition strategy and
// both buffering modes, over a small version of the DESIGN 7 grid.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include <hwy/targets.h>
#include <sstream>

#include "mla/compare.hpp"
#include "mla/reference.hpp"
#include "sim_tpu/tile_math.hpp"
#include "sim_tpu_helpers.hpp"

using namespace mla;
using sim_tpu_test::run_once;
using sim_tpu_test::small_config;

namespace {

struct Case {
  Variant variant;
  int64_t batch, s_q, h_q, h_kv, page_size;
  bool causal;
  std::vector<int32_t> lens;  // empty: varlen around 100
};

std::string describe(const Case& c) {
  std::ostringstream os;
  os << variant_name(c.variant) << " b=" << c.batch << " s_q=" << c.s_q << " h_q=" << c.h_q << " h_kv=" << c.h_kv
     << " page=" << c.page_size << (c.causal ? " causal" : "") << " lens=";
  for (int32_t l : c.lens) os << l << ',';
  return os.str();
}

void check_case(const nlohmann::json& config, const Case& c) {
  Problem p;
  p.variant = c.variant;
  p.batch = c.batch;
  p.s_q = c.s_q;
  p.h_q = c.h_q;
  p.h_kv = c.h_kv;
  p.page_size = c.page_size;
  p.causal = c.causal;
  InputSpec spec;
  spec.seed = static_cast<uint64_t>(c.batch * 1000 + c.h_q * 10 + c.s_q);
  if (c.lens.empty()) {
    spec.seqlen = 100;
    spec.varlen = true;
  } else {
    spec.seqlens = c.lens;
  }
  HostInputs in = make_random_inputs(p, spec);
  auto outcome = run_once(config, in);
  ReferenceOutput ref = reference_decode(in.problem, in.args());
  Comparison cmp = compare_to_reference(in.problem, ref, in.out.view(), in.lse.view());
  INFO(describe(c) << " partition=" << config["kernel"]["partition"] << " double_buffer=" << config["kernel"]["double_buffer"]
                   << " kernel=" << outcome.result.kernel << ": " << cmp.summary());
  CHECK(cmp.passed);
  CHECK(outcome.result.backend == "sim_tpu");
  CHECK(outcome.result.simulated);
  CHECK(outcome.result.seconds > 0);
}

std::vector<Case> grid() {
  return {
      {Variant::latent, 1, 1, 1, 1, 16, false, {20}},
      {Variant::latent, 2, 1, 3, 1, 16, false, {0, 65}},
      {Variant::latent, 6, 2, 16, 1, 16, true, {2, 20, 63, 64, 65, 140}},
      {Variant::latent, 2, 4, 16, 2, 64, true, {4, 140}},
      {Variant::latent, 6, 1, 16, 2, 16, false, {}},
      {Variant::latent, 2, 1, 32, 1, 64, false, {1, 300}},
      {Variant::absorb, 2, 1, 16, 1, 16, false, {63, 140}},
      {Variant::absorb, 2, 2, 3, 1, 64, true, {0, 65}},
  };
}

}  // namespace

TEST_CASE("sim_tpu matches the reference for every partition and buffering mode", "[sim_tpu]") {
  for (const char* partition : {"heads", "batch", "sequence", "auto"})
    for (bool db : {true, false}) {
      const nlohmann::json config = small_config(partition, db);
      for (const Case& c : grid()) check_case(config, c);
    }
}

TEST_CASE("sim_tpu tile math matches the reference on every SIMD target this CPU runs", "[sim_tpu][simd]") {
  int covered = 0;
  for (int64_t rest = hwy::SupportedTargets(); rest != 0; rest &= rest - 1) {
    const int64_t target = rest & -rest;
    hwy::SetSupportedTargetsForTest(target);
    // A target the backend was not built for (SSSE3 is left out) falls back to a lower one.
    const bool built = std::string(mla::sim_tpu::tile_math_for_this_cpu().target) == hwy::TargetName(target);
    if (built) {
      ++covered;
      INFO("forced target " << hwy::TargetName(target));
      for (const Case& c : grid()) check_case(small_config("auto", true), c);
    }
    hwy::SetSupportedTargetsForTest(0);
  }
  CHECK(covered >= 2);  // at least the best target and the fallback
}

TEST_CASE("sim_tpu matches the reference with automatic tile sizes on the shipped configs", "[sim_tpu]") {
  for (const char* file : {"sc11_fp300.json", "ascend910b.json"}) {
    const nlohmann::json config = sim_tpu_test::shipped_config(file);
    check_case(config, {Variant::latent, 2, 1, 16, 1, 64, false, {700, 129}});
    check_case(config, {Variant::absorb, 3, 2, 8, 1, 64, true, {33, 0, 520}});
  }
}

TEST_CASE("sim_tpu timing-only mode leaves the outputs untouched and times the same schedule", "[sim_tpu]") {
  Problem p;
  p.batch = 2;
  p.h_q = 8;
  InputSpec spec;
  spec.seqlens = {40, 90};
  HostInputs in = make_random_inputs(p, spec);
  nlohmann::json config = small_config("auto", true);
  const double functional = run_once(config, in).result.seconds;
  in.poison_outputs();
  config["kernel"]["timing_only"] = true;
  auto timed = run_once(config, in);
  CHECK(timed.result.seconds == functional);
  CHECK(timed.report["timing_only"] == true);
  for (int64_t i = 0; i < in.out.view().numel(); ++i) REQUIRE(std::isnan(in.out.get(i)));
  for (int64_t i = 0; i < in.lse.view().numel(); ++i) REQUIRE(std::isnan(in.lse.get(i)));
}
