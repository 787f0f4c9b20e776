// sim_tpu's context-parallel estimate (topology.context_parallel): the modelled step is the
// largest shard's step (the same model on the shard's lengths) plus the exchange of the partials
// over the link (a ring all-gather, or two ring all-reduces) plus their merge, each term as
// documented; the functional run still computes the whole result; a link is required once
// ranks > 1.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "mla/compare.hpp"
#include "mla/error.hpp"
#include "mla/reference.hpp"
#include "sim_tpu_helpers.hpp"

using namespace mla;
using sim_tpu_test::small_config;
using sim_tpu_test::timing_inputs;

namespace {

nlohmann::json with_ranks(nlohmann::json c, int64_t ranks, double gbps, double latency_us) {
  c["topology"]["context_parallel"] = {{"ranks", ranks}, {"link_bandwidth_gbps", gbps}, {"link_latency_us", latency_us}};
  return c;
}

nlohmann::json timed_report(nlohmann::json config, const Problem& p, const std::vector<int32_t>& lens) {
  config["kernel"]["timing_only"] = true;
  HostInputs in = timing_inputs(p, lens);
  return sim_tpu_test::run_once(config, in).report;
}

// The timing cases' problem: three sequences (one empty), s_q 2 causal, h_q 16.
Problem timed_problem() {
  Problem p;
  p.batch = 3;
  p.s_q = 2;
  p.h_q = 16;
  p.causal = true;
  return p;
}
const std::vector<int32_t> kTimedLens = {0, 130, 1000};

}  // namespace

TEST_CASE("sim_tpu context parallel: shard step + ring exchange + merge", "[sim_tpu][context_parallel]") {
  const Problem p = timed_problem();
  const std::vector<int32_t>& lens = kTimedLens;
  for (int64_t ranks : {2, 3}) {
    INFO(ranks << " ranks");
    const double gbps = 50, latency_us = 2;
    const nlohmann::json r = timed_report(with_ranks(small_config("auto", true), ranks, gbps, latency_us), p, lens);
    REQUIRE(r.contains("context_parallel"));
    const nlohmann::json& cp = r["context_parallel"];
    CHECK(cp["ranks"] == ranks);
    // The largest shard: ceil(pages / ranks) pages of each sequence (the rank-order page split).
    std::vector<int32_t> shard;
    for (int32_t len : lens) {
      const int64_t pages = (len + p.page_size - 1) / p.page_size, largest = (pages + ranks - 1) / ranks;
      shard.push_back(static_cast<int32_t>(std::min<int64_t>(len, largest * p.page_size)));
    }
    const double shard_s = timed_report(small_config("auto", true), p, shard)["latency_s"].get<double>();
    CHECK(cp["shard_s"].get<double>() == Approx(shard_s).epsilon(1e-12));
    const int64_t bytes = p.batch * p.s_q * p.h_q * (p.d_v() * 2 + 4);  // bf16 out + fp32 lse
    CHECK(cp["bytes_per_rank"] == bytes);
    const double exchange_s = static_cast<double>(ranks - 1) * (latency_us * 1e-6 + static_cast<double>(bytes) / (gbps * 1e9));
    CHECK(cp["exchange_s"].get<double>() == Approx(exchange_s).epsilon(1e-9));
    CHECK(cp["merge_s"].get<double>() > 0);
    CHECK(r["latency_s"].get<double>() ==
          Approx(cp["shard_s"].get<double>() + cp["exchange_s"].get<double>() + cp["merge_s"].get<double>()));
    CHECK(r["strategy_reason"].get<std::string>().find("context parallel over " + std::to_string(ranks)) != std::string::npos);
  }
  // One rank: no context-parallel terms, the step as before.
  const nlohmann::json one = timed_report(with_ranks(small_config("auto", true), 1, 50, 2), p, lens);
  CHECK_FALSE(one.contains("context_parallel"));
  CHECK(one["latency_s"].get<double>() ==
        Approx(timed_report(small_config("auto", true), p, lens)["latency_s"].get<double>()).epsilon(1e-12));
}

TEST_CASE("sim_tpu context parallel: the all_reduce exchange is modelled as two ring all-reduces",
          "[sim_tpu][context_parallel]") {
  const Problem p = timed_problem();
  const std::vector<int32_t>& lens = kTimedLens;
  const double gbps = 50, latency_us = 2;
  for (int64_t ranks : {2, 3}) {
    INFO(ranks << " ranks");
    nlohmann::json config = with_ranks(small_config("auto", true), ranks, gbps, latency_us);
    const nlohmann::json gather = timed_report(config, p, lens);
    config["context_parallel"]["exchange"] = "all_reduce";
    const nlohmann::json r = timed_report(config, p, lens);
    REQUIRE(r.contains("context_parallel"));
    const nlohmann::json& cp = r["context_parallel"];
    CHECK(cp["exchange"] == "all_reduce");
    CHECK(gather["context_parallel"]["exchange"] == "all_gather");
    // The same shard step; the exchange: a max all-reduce of fp32 LSEs, then a sum all-reduce
    // of fp32 [out x w | w], each 2 (ranks - 1) hops of 1 / ranks of its buffer.
    CHECK(cp["shard_s"].get<double>() == Approx(gather["context_parallel"]["shard_s"].get<double>()).epsilon(1e-12));
    const int64_t rows = p.batch * p.s_q * p.h_q;
    const double keys = static_cast<double>(rows * 4), sums = static_cast<double>(rows * (p.d_v() + 1) * 4);
    const double n = static_cast<double>(ranks);
    auto ring = [&](double bytes) { return 2 * (n - 1) * (latency_us * 1e-6 + bytes / n / (gbps * 1e9)); };
    CHECK(cp["bytes_per_rank"] == static_cast<int64_t>(keys + sums));
    CHECK(cp["exchange_s"].get<double>() == Approx(ring(keys) + ring(sums)).epsilon(1e-9));
    // The local work on the same vector units: 2 (d_v + 1) values per row (rescale, divide)
    // against the all-gather merge's ranks x (d_v + 2).
    CHECK(cp["merge_s"].get<double>() > 0);
    CHECK(cp["merge_s"].get<double>() / gather["context_parallel"]["merge_s"].get<double>() ==
          Approx(2.0 * static_cast<double>(p.d_v() + 1) / (n * static_cast<double>(p.d_v() + 2))));
    CHECK(r["latency_s"].get<double>() ==
          Approx(cp["shard_s"].get<double>() + cp["exchange_s"].get<double>() + cp["merge_s"].get<double>()));
    CHECK(r["strategy_reason"].get<std::string>().find("all_reduce") != std::string::npos);
  }
}

TEST_CASE("sim_tpu context parallel: a long sequence scales, the functional result is the whole one",
          "[sim_tpu][context_parallel]") {
  Problem p;
  p.batch = 1;
  p.h_q = 16;
  const double one = timed_report(small_config("sequence", true), p, {8192})["latency_s"].get<double>();
  const double two = timed_report(with_ranks(small_config("sequence", true), 2, 100, 1), p, {8192})["latency_s"].get<double>();
  CHECK(two < one);
  CHECK(two > one / 2);  // the exchange and the merge are not free

  Problem f;
  f.batch = 3;
  f.s_q = 2;
  f.h_q = 16;
  f.causal = true;
  InputSpec spec;
  spec.seqlens = {0, 77, 300};
  spec.seed = Catch::rngSeed() + 5u;
  HostInputs in = make_random_inputs(f, spec);
  auto device = open_device(with_ranks(small_config("auto", true), 2, 100, 1));
  auto plan = device->plan(in.problem);
  auto schedule = plan->schedule(in.cache_seqlens.view());
  in.poison_outputs();
  plan->run(in.args(), *schedule);
  const Comparison c = compare_to_reference(in.problem, reference_decode(in.problem, in.args()), in.out.view(), in.lse.view());
  INFO(c.summary());
  CHECK(c.passed);
}

TEST_CASE("sim_tpu context parallel: more than one rank needs a link, named by its JSON path",
          "[sim_tpu][context_parallel]") {
  nlohmann::json c = small_config("auto", true);
  c["topology"]["context_parallel"] = {{"ranks", 2}};
  try {
    open_device(c);
    FAIL("a config with 2 ranks and no link opened");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::invalid_config);
    CHECK(std::string(e.what()).find("/topology/context_parallel/link_bandwidth_gbps") != std::string::npos);
  }
  c["topology"]["context_parallel"] = {{"ranks", 0}, {"link_bandwidth_gbps", 10}};
  CHECK_THROWS_AS(open_device(c), Error);
}
