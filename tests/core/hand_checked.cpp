// A case small enough to check by hand: one head, two keys, d_c = 2, no rotary part.
// q = [1, 0]; k0 = v0 = [1, 0]; k1 = v1 = [0, 1]; scale 1 -> scores 1 and 0.
// lse = log(e + 1); out = (e * v0 + v1) / (e + 1).
#include <catch2/catch.hpp>

#include <cmath>

#include "test_support.hpp"

using namespace mla;

TEST_CASE("hand-checked two-key attention on every cpu path", "[core][cpu]") {
  for (const char* path : {"reference", "fast"}) {
    Problem p = testing::small_problem(1, 1, 1, 1, false, 1, Variant::latent, DType::fp32);
    p.d_c = 2;
    p.d_r = 0;
    p.softmax_scale = 1.0f;
    p.num_blocks = 3;
    p.max_blocks_per_seq = 3;
    HostTensor q(DType::fp32, {1, 1, 1, 2}), kv(DType::fp32, {3, 1, 1, 2}), table(DType::int32, {1, 3}),
        lens(DType::int32, {1}), out(DType::fp32, {1, 1, 1, 2}), lse(DType::fp32, {1, 1, 1});
    q.set(0, 1), q.set(1, 0);
    kv.fill_nan();  // block 1 is never used: a read of it would poison the result
    kv.set(4, 1), kv.set(5, 0);  // block 2 holds key 0
    kv.set(0, 0), kv.set(1, 1);  // block 0 holds key 1
    table.as<int32_t>()[0] = 2, table.as<int32_t>()[1] = 0, table.as<int32_t>()[2] = 2147480000;
    lens.as<int32_t>()[0] = 2;
    out.fill_nan();
    lse.fill_nan();
    RunArgs a;
    a.q = q.view(), a.kv_cache = kv.view(), a.block_table = table.view(), a.cache_seqlens = lens.view();
    a.out = out.view(), a.lse = lse.view();

    auto device = open_device(testing::config_for("cpu", {{"cpu", {{"path", path}}}}));
    auto plan = device->plan(p);
    auto schedule = plan->schedule(lens.view());
    plan->run(a, *schedule);
    const double e = std::exp(1.0);
    INFO(path);
    CHECK(lse.get(0) == Approx(std::log(e + 1.0)).epsilon(1e-6));
    CHECK(out.get(0) == Approx(e / (e + 1.0)).epsilon(1e-6));
    CHECK(out.get(1) == Approx(1.0 / (e + 1.0)).epsilon(1e-6));
  }
}

TEST_CASE("empty and fully masked queries give out = 0 and lse = +inf", "[core][cpu]") {
  for (const char* path : {"reference", "fast"}) {
    auto device = open_device(testing::config_for("cpu", {{"cpu", {{"path", path}}}}));
    InputSpec spec;
    spec.seqlens = {0, 1};  // with s_q = 2 causal, query 0 of sequence 1 sees nothing
    HostInputs in = make_random_inputs(testing::small_problem(2, 2, 4, 1, true, 16), spec);
    auto plan = device->plan(in.problem);
    plan->run(in.args(), *plan->schedule(in.cache_seqlens.view()));
    const auto& p = in.problem;
    auto lse_at = [&](int64_t i, int64_t h, int64_t t) { return in.lse.get((i * p.h_q + h) * p.s_q + t); };
    auto out_abs_sum = [&](int64_t i, int64_t t, int64_t h) {
      double s = 0;
      for (int64_t d = 0; d < p.d_v(); ++d) s += std::fabs(in.out.get(((i * p.s_q + t) * p.h_q + h) * p.d_v() + d));
      return s;
    };
    INFO(path);
    for (int64_t h = 0; h < p.h_q; ++h) {
      CHECK(std::isinf(lse_at(0, h, 0)));
      CHECK(lse_at(0, h, 0) > 0);
      CHECK(std::isinf(lse_at(1, h, 0)));
      CHECK(std::isfinite(lse_at(1, h, 1)));
      CHECK(out_abs_sum(0, 1, h) == 0.0);
      CHECK(out_abs_sum(1, 0, h) == 0.0);
      CHECK(out_abs_sum(1, 1, h) > 0.0);
    }
  }
}
