// NaN and Inf in the query: every host backend must give exactly what the float64 reference
// gives (NaN out and lse for a row that holds one and sees a key; out 0, lse +inf for a fully
// masked row), which compare_to_reference checks position by position. Fresh random inputs
// and positions every run (the seed is printed on failure), both variants, causal rows that
// see nothing, and sequences long enough for split-KV merges.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>

#include "mla/compare.hpp"
#include "mla/registry.hpp"
#include "sim_tpu/sim_tpu_helpers.hpp"
#include "test_support.hpp"

namespace {

using namespace mla;

// Writes `value` into `count` random elements of `t` (a float tensor).
void plant(HostTensor& t, std::mt19937_64& rng, double value, int count) {
  std::uniform_int_distribution<int64_t> pick(0, t.view().numel() - 1);
  for (int k = 0; k < count; ++k) t.set(pick(rng), value);
}

struct Backend {
  const char* label;
  nlohmann::json config;
};

}  // namespace

TEST_CASE("NaN and Inf in the query propagate exactly as in the reference on every host backend", "[nonfinite]") {
  const Backend backends[] = {
      {"cpu fast (auto isa)", testing::config_for("cpu")},
      {"cpu fast (portable)", testing::config_for("cpu", {{"cpu", {{"isa", "portable"}}}})},
      {"cpu reference path", testing::config_for("cpu", {{"cpu", {{"path", "reference"}}}})},
      // Two partitions: heads (one item per sequence) and sequence (split keys, combine items).
      {"sim_tpu (heads)", sim_tpu_test::small_config("heads", true)},
      {"sim_tpu (sequence)", sim_tpu_test::small_config("sequence", true)},
  };
  const uint64_t seed = std::random_device{}();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  const double values[] = {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
                           -std::numeric_limits<double>::infinity()};
  for (const Backend& b : backends) {
    auto device = open_device(b.config);
    for (Variant variant : {Variant::latent, Variant::absorb})
      for (int s_q : {1, 3}) {
        INFO(b.label << ", " << variant_name(variant) << ", s_q " << s_q);
        // Batch 1 with a long sequence makes the cpu backend split the keys (merged later);
        // a length below s_q with causal leaves rows that see nothing.
        Problem p = testing::small_problem(3, s_q, 16, 1, s_q > 1, 16, variant);
        InputSpec spec;
        spec.seqlens = {static_cast<int32_t>(600 + rng() % 1500), static_cast<int32_t>(rng() % 2), 37};
        spec.seed = rng();
        HostInputs in = make_random_inputs(p, spec);
        for (double v : values) {
          HostTensor& q = variant == Variant::latent ? in.q : (rng() % 2 ? in.q_nope : in.q_rope);
          plant(q, rng, v, 2);
        }
        auto r = testing::run_and_compare(*device, in);
        INFO(r.comparison.summary());
        CHECK(r.comparison.nonfinite_mismatches == 0);
        CHECK(r.comparison.unwritten == 0);
        CHECK(r.comparison.passed);
      }
  }
}

TEST_CASE("compare_to_reference matches NaN/Inf by kind and position", "[nonfinite]") {
  Problem p = testing::small_problem(1, 1, 2, 1, false, 16);
  p.num_blocks = 1;
  p.max_blocks_per_seq = 1;
  ReferenceOutput ref;
  ref.out.assign(static_cast<size_t>(2 * p.d_v()), 0.5);
  ref.lse = {1.0, 2.0};
  HostTensor out(DType::fp32, {1, 1, 2, p.d_v()}), lse(DType::fp32, {1, 2, 1});
  auto fill = [&] {
    for (int64_t k = 0; k < out.view().numel(); ++k) out.set(k, 0.5);
    lse.set(0, 1.0);
    lse.set(1, 2.0);
  };
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  fill();
  CHECK(compare_to_reference(p, ref, out.view(), lse.view()).passed);
  // The same NaN in both: no mismatch.
  ref.out[3] = nan;
  out.set(3, nan);
  ref.lse[1] = nan;
  lse.set(1, nan);
  Comparison c = compare_to_reference(p, ref, out.view(), lse.view());
  CHECK(c.nonfinite_mismatches == 0);
  CHECK(c.unwritten == 0);
  CHECK(c.passed);
  // NaN where the reference is finite: a mismatch, and possibly poison left unwritten.
  out.set(5, nan);
  c = compare_to_reference(p, ref, out.view(), lse.view());
  CHECK(c.nonfinite_mismatches == 1);
  CHECK(c.unwritten == 1);
  CHECK(!c.passed);
  // +Inf where the reference has -Inf, finite where it has NaN: two mismatches, none unwritten.
  fill();
  ref.out.assign(ref.out.size(), 0.5);
  ref.out[0] = -inf;
  out.set(0, inf);
  ref.lse = {nan, 2.0};
  c = compare_to_reference(p, ref, out.view(), lse.view());
  CHECK(c.nonfinite_mismatches == 2);
  CHECK(c.unwritten == 0);
}
