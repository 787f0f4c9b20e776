// Context parallelism on the host: every sequence's KV split by pages over N ranks (threads of
// one process with an InProcessGroup), each rank runs the operator over its shard on the cpu
// backend, merge_context_parallel combines the partials, by either exchange
// (context_parallel.exchange). Every rank must end with the same bits, within the usual
// tolerance of the float64 reference of the unsplit problem, and the two exchanges within bf16
// tolerance of each other. Also: the merge's edge rules on hand-made partials, InProcessGroup's
// all-reduce, a communicator without all_reduce, the config key, and head-sharded
// (tensor-parallel) absorb, rank r running h_q/N heads with its slice of w_uk / w_uv.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "mla/context_parallel.hpp"
#include "mla/error.hpp"
#include "mla/registry.hpp"
#include "test_support.hpp"

using namespace mla;
using namespace mla::testing;

namespace {


std::unique_ptr<Device> cpu_with_exchange(ContextExchange exchange) {
  return open_device(config_for("cpu", {{"context_parallel", {{"exchange", context_exchange_name(exchange)}}}}));
}

// Runs `fn(rank, communicator)` on one thread per rank of an InProcessGroup of n; returns each
// rank's exception text ("" when it finished).
template <typename Fn>
std::vector<std::string> on_ranks(int n, Fn&& fn) {
  InProcessGroup group(n);
  std::vector<std::string> errors(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      try {
        auto comm = group.communicator(r);
        fn(r, *comm);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  return errors;
}

// Each rank's shard of `full` run on `device`, then merged: ranks[r] holds rank r's result.
std::vector<HostInputs> run_and_merge(Device& device, const HostInputs& full, int n) {
  std::vector<HostInputs> ranks;
  for (int r = 0; r < n; ++r) {
    ranks.push_back(context_shard(full, r, n));
    auto plan = device.plan(ranks.back().problem);
    auto schedule = plan->schedule(ranks.back().cache_seqlens.view());
    plan->run(ranks.back().args(), *schedule);
  }
  const auto errors = on_ranks(n, [&](int r, Communicator& comm) {
    device.merge_context_parallel(full.problem, ranks[static_cast<size_t>(r)].out.view(),
                                  ranks[static_cast<size_t>(r)].lse.view(), comm);
  });
  for (const auto& e : errors) CHECK(e.empty());
  return ranks;
}

// A result as a "reference", to compare one merge with another.
ReferenceOutput as_reference(const HostInputs& in) {
  ReferenceOutput r;
  for (int64_t i = 0; i < in.out.view().numel(); ++i) r.out.push_back(in.out.get(i));
  for (int64_t i = 0; i < in.lse.view().numel(); ++i) r.lse.push_back(in.lse.get(i));
  return r;
}

}  // namespace

TEST_CASE("context parallel: N shards merged equal one device, both exchanges", "[core][context_parallel]") {
  auto gather = cpu_with_exchange(ContextExchange::all_gather), reduce = cpu_with_exchange(ContextExchange::all_reduce);
  CHECK(gather->context_exchange() == ContextExchange::all_gather);
  CHECK(reduce->context_exchange() == ContextExchange::all_reduce);
  CHECK(open_device(config_for("cpu"))->context_exchange() == ContextExchange::all_gather);  // the default
  uint64_t seed = Catch::rngSeed() * 31u + 5u;
  for (int n : {2, 3})
    for (Variant variant : {Variant::latent, Variant::absorb})
      for (int64_t s_q : {1, 2}) {
        Problem p = small_problem(4, s_q, 16, 1, s_q > 1, 16, variant);
        InputSpec spec;
        spec.seqlens = {0, 1, 70, 333};  // 0: no rank sees the sequence; 1: only the last rank
        spec.seed = ++seed;
        const HostInputs full = make_random_inputs(p, spec);
        INFO(n << " ranks, " << full.problem.describe() << " seed " << spec.seed);
        const std::vector<HostInputs> by_gather = run_and_merge(*gather, full, n);
        {
          INFO("all_gather");
          check_merged_ranks(full, by_gather);
        }
        const std::vector<HostInputs> by_reduce = run_and_merge(*reduce, full, n);
        {
          INFO("all_reduce");
          check_merged_ranks(full, by_reduce);
        }
        const Comparison c = compare_to_reference(full.problem, as_reference(by_gather[0]), by_reduce[0].out.view(),
                                                  by_reduce[0].lse.view(), tolerance_for(DType::bf16));
        INFO("all_reduce against all_gather: " << c.summary());
        CHECK(c.passed);
      }
}

TEST_CASE("context parallel merge: edge rows by both exchanges", "[core][context_parallel]") {
  // Two ranks, four rows (heads) of one token: both saw keys; only rank 1 did (rank 0's lse +inf,
  // its out not 0: it must still add nothing); nobody did; rank 1's lse NaN.
  const Problem p = small_problem(1, 1, 4, 1, false, 16);
  const int64_t width = p.out_width();
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const float lse[2][4] = {{1.f, inf, inf, 0.25f}, {2.f, 0.5f, inf, nan}};
  const float value[2][4] = {{1.f, 5.f, 0.f, 1.f}, {3.f, 2.f, 0.f, 1.f}};
  for (ContextExchange exchange : kContextExchanges) {
    INFO(context_exchange_name(exchange));
    std::vector<HostTensor> outs, lses;
    for (int r = 0; r < 2; ++r) {
      outs.emplace_back(DType::bf16, std::vector<int64_t>{1, 1, 4, width});
      lses.emplace_back(DType::fp32, std::vector<int64_t>{1, 4, 1});
      for (int64_t h = 0; h < 4; ++h) {
        for (int64_t d = 0; d < width; ++d) outs.back().set(h * width + d, value[r][h]);
        lses.back().as<float>()[h] = lse[r][h];
      }
    }
    const auto errors = on_ranks(2, [&](int r, Communicator& comm) {
      merge_context_parallel_host(p, outs[static_cast<size_t>(r)].view(), lses[static_cast<size_t>(r)].view(), comm,
                                  nullptr, exchange);
    });
    for (const auto& e : errors) CHECK(e.empty());
    CHECK(std::memcmp(outs[0].data(), outs[1].data(), outs[0].bytes()) == 0);
    CHECK(std::memcmp(lses[0].data(), lses[1].data(), lses[0].bytes()) == 0);
    const double e1 = std::exp(1.0), e2 = std::exp(2.0);
    const double both = (e1 * 1 + e2 * 3) / (e1 + e2);
    for (int64_t d = 0; d < width; d += 97) {
      CHECK(outs[0].get(0 * width + d) == Approx(both).epsilon(8e-3));
      CHECK(outs[0].get(1 * width + d) == 2.0);
      CHECK(outs[0].get(2 * width + d) == 0.0);
      CHECK(std::isnan(outs[0].get(3 * width + d)));
    }
    const float* merged = lses[0].as<float>();
    CHECK(merged[0] == Approx(std::log(e1 + e2)).epsilon(1e-6));
    CHECK(merged[1] == 0.5f);
    CHECK(merged[2] == inf);
    CHECK(std::isnan(merged[3]));
  }
}

TEST_CASE("InProcessGroup all_reduce: rank-order sums and max, the same bits on every rank", "[core][context_parallel]") {
  const int n = 3;
  const size_t count = 5;
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<std::vector<float>> sums(n), maxes(n);
  const auto errors = on_ranks(n, [&](int r, Communicator& comm) {
    const auto k = static_cast<float>(r);
    // Element 3 sums 1e8 + 1 - 1e8: 0 in float, 1 in the double the group accumulates in.
    std::vector<float> x = {k + 0.5f, -k, 0.25f * k, r == 0 ? 1e8f : r == 1 ? 1.f : -1e8f, r == 1 ? -inf : k};
    std::vector<float>& sum = sums[static_cast<size_t>(r)];
    sum.resize(count);
    comm.all_reduce(x.data(), sum.data(), count, ReduceOp::sum, nullptr);
    comm.all_reduce(x.data(), x.data(), count, ReduceOp::max, nullptr);  // in place
    maxes[static_cast<size_t>(r)] = x;
  });
  for (const auto& e : errors) CHECK(e.empty());
  const std::vector<float> sum = {4.5f, -3.f, 0.75f, 1.f, -inf}, max = {2.5f, 0.f, 0.5f, 1e8f, 2.f};
  for (int r = 0; r < n; ++r) {
    CHECK(sums[static_cast<size_t>(r)] == sum);
    CHECK(maxes[static_cast<size_t>(r)] == max);
  }
}

TEST_CASE("a communicator without all_reduce works with the all_gather exchange only", "[core][context_parallel]") {
  // What a runtime's communicator written before all_reduce existed looks like.
  class GatherOnly final : public Communicator {
   public:
    explicit GatherOnly(Communicator& inner) : inner_(inner) {}
    [[nodiscard]] int rank() const override { return inner_.rank(); }
    [[nodiscard]] int size() const override { return inner_.size(); }
    void all_gather(const void* send, void* recv, size_t bytes, void* stream) override {
      inner_.all_gather(send, recv, bytes, stream);
    }

   private:
    Communicator& inner_;
  };
  Problem p = small_problem(1, 1, 2, 1, false, 16);
  p.num_blocks = p.max_blocks_per_seq = 1;
  for (ContextExchange exchange : kContextExchanges) {
    auto device = cpu_with_exchange(exchange);
    const auto errors = on_ranks(2, [&](int, Communicator& comm) {
      HostTensor out(DType::bf16, {1, 1, 2, p.out_width()}), lse(DType::fp32, {1, 2, 1});
      for (int64_t h = 0; h < 2; ++h) lse.as<float>()[h] = std::numeric_limits<float>::infinity();  // saw nothing
      GatherOnly gather_only(comm);
      device->merge_context_parallel(p, out.view(), lse.view(), gather_only);
    });
    for (const auto& e : errors) {
      if (exchange == ContextExchange::all_gather) {
        CHECK(e.empty());
      } else {
        CHECK_THAT(e, Catch::Contains("no all_reduce") && Catch::Contains("context_parallel.exchange"));
      }
    }
  }
}

TEST_CASE("config: context_parallel.exchange", "[core][context_parallel][config]") {
  auto problems = [](const nlohmann::json& extra) {
    std::vector<std::string> out;
    for (const auto& i : validate_config(config_for("cpu", extra))) out.push_back(i.to_string());
    return out;
  };
  CHECK(problems({{"context_parallel", {{"exchange", "all_reduce"}}}}).empty());
  CHECK(problems({{"context_parallel", {{"exchange", "all_gather"}}}}).empty());
  CHECK(problems({{"context_parallel", nlohmann::json::object()}}).empty());
  CHECK(problems({{"context_parallel", {{"exchange", "allreduce"}}}}) ==
        std::vector<std::string>{"/context_parallel/exchange: expected one of all_gather, all_reduce, got \"allreduce\" "
                                 "(did you mean \"all_reduce\"?)"});
  CHECK(problems({{"context_parallel", {{"exchnage", "all_reduce"}}}}) ==
        std::vector<std::string>{"/context_parallel/exchnage: unknown key (did you mean \"exchange\"?)"});
  CHECK(problems({{"context_parallel", "all_reduce"}}) ==
        std::vector<std::string>{"/context_parallel: expected an object, got string"});
  // Common to every backend: sim_tpu's host merge honours it too.
  nlohmann::json sim = read_config_file(std::string(MLA_SOURCE_DIR) + "/configs/sc11_fp300.json");
  sim["context_parallel"] = {{"exchange", "all_reduce"}};
  CHECK(validate_config(sim).empty());
  try {
    open_device(config_for("cpu", {{"context_parallel", {{"exchange", 2}}}}));
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::invalid_config);
    CHECK_THAT(e.what(), Catch::Contains("/context_parallel/exchange"));
  }
}

TEST_CASE("head-sharded absorb: rank r's heads equal the same heads of one device", "[core][context_parallel]") {
  auto device = open_device(config_for("cpu"));
  const int n = 4;
  Problem p = small_problem(2, 2, 16, 1, true, 16, Variant::absorb);
  InputSpec spec;
  spec.seqlens = {45, 130};
  spec.seed = Catch::rngSeed() * 13u + 2u;
  const HostInputs full = make_random_inputs(p, spec);
  const ReferenceOutput ref = reference_decode(full.problem, full.args());
  const int64_t heads = p.h_q / n, d_vh = full.problem.d_vh;
  for (int r = 0; r < n; ++r) {
    INFO("rank " << r << " of " << n << ", heads [" << r * heads << ", " << (r + 1) * heads << ")");
    HostInputs s = full;
    s.problem.h_q = heads;
    auto slice = [&](const HostTensor& t, int head_dim) {  // heads [r*heads, (r+1)*heads) of dimension head_dim
      std::vector<int64_t> shape(t.view().shape.begin(), t.view().shape.begin() + t.view().rank);
      const int64_t outer = head_dim == 0 ? 1 : shape[0] * shape[1], inner = t.view().strides[head_dim];
      shape[static_cast<size_t>(head_dim)] = heads;
      HostTensor out(t.view().dtype, shape);
      const size_t esize = dtype_size(t.view().dtype);
      for (int64_t o = 0; o < outer; ++o)
        std::memcpy(out.as<char>() + static_cast<size_t>(o * heads * inner) * esize,
                    t.as<char>() + static_cast<size_t>(o * t.view().shape[head_dim] * inner + r * heads * inner) * esize,
                    static_cast<size_t>(heads * inner) * esize);
      return out;
    };
    s.q_nope = slice(full.q_nope, 2);
    s.q_rope = slice(full.q_rope, 2);
    s.w_uk = slice(full.w_uk, 0);
    s.w_uv = slice(full.w_uv, 0);
    s.out = HostTensor(full.out.view().dtype, {p.batch, p.s_q, heads, d_vh});
    s.lse = HostTensor(DType::fp32, {p.batch, heads, p.s_q});
    s.poison_outputs();
    auto plan = device->plan(s.problem);
    auto schedule = plan->schedule(s.cache_seqlens.view());
    plan->run(s.args(), *schedule);
    // The matching heads of the one-device reference, as a reference of the shard's shape.
    ReferenceOutput sliced;
    for (int64_t i = 0; i < p.batch; ++i)
      for (int64_t t = 0; t < p.s_q; ++t)
        for (int64_t h = r * heads; h < (r + 1) * heads; ++h)
          for (int64_t e = 0; e < d_vh; ++e) sliced.out.push_back(ref.out[static_cast<size_t>(((i * p.s_q + t) * p.h_q + h) * d_vh + e)]);
    for (int64_t i = 0; i < p.batch; ++i)
      for (int64_t h = r * heads; h < (r + 1) * heads; ++h)
        for (int64_t t = 0; t < p.s_q; ++t) sliced.lse.push_back(ref.lse[static_cast<size_t>((i * p.h_q + h) * p.s_q + t)]);
    const ReferenceOutput own = reference_decode(s.problem, s.args());
    CHECK(own.out == sliced.out);  // the shard's own reference is bitwise the slice
    CHECK(own.lse == sliced.lse);
    const Comparison c = compare_to_reference(s.problem, sliced, s.out.view(), s.lse.view());
    INFO(c.summary());
    CHECK(c.passed);
  }
}
