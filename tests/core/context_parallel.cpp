// Context parallelism on the host: every sequence's KV split by pages over N ranks (threads of
// one process with an InProcessGroup), each rank runs the operator over its shard on the cpu
// backend, merge_context_parallel combines the partials. Every rank must end with the same bits,
// within the usual tolerance of the float64 reference of the unsplit problem. Also: head-sharded
// (tensor-parallel) absorb, rank r running h_q/N heads with its slice of w_uk / w_uv.
#include <catch2/catch.hpp>

#include <thread>
#include <vector>

#include "mla/context_parallel.hpp"
#include "test_support.hpp"

using namespace mla;
using namespace mla::testing;


TEST_CASE("context parallel: N shards merged equal one device", "[core][context_parallel]") {
  auto device = open_device(config_for("cpu"));
  uint64_t seed = Catch::rngSeed() * 31u + 5u;
  for (int n : {2, 3})
    for (Variant variant : {Variant::latent, Variant::absorb})
      for (int64_t s_q : {1, 2}) {
        Problem p = small_problem(4, s_q, 16, 1, s_q > 1, 16, variant);
        InputSpec spec;
        spec.seqlens = {0, 1, 70, 333};
        spec.seed = ++seed;
        const HostInputs full = make_random_inputs(p, spec);
        INFO(n << " ranks, " << full.problem.describe() << " seed " << spec.seed);
        std::vector<HostInputs> ranks;
        for (int r = 0; r < n; ++r) {
          ranks.push_back(context_shard(full, r, n));
          auto plan = device->plan(ranks.back().problem);
          auto schedule = plan->schedule(ranks.back().cache_seqlens.view());
          plan->run(ranks.back().args(), *schedule);
        }
        InProcessGroup group(n);
        std::vector<std::thread> threads;
        for (int r = 0; r < n; ++r)
          threads.emplace_back([&, r] {
            auto comm = group.communicator(r);
            device->merge_context_parallel(full.problem, ranks[static_cast<size_t>(r)].out.view(),
                                           ranks[static_cast<size_t>(r)].lse.view(), *comm);
          });
        for (auto& t : threads) t.join();
        check_merged_ranks(full, ranks);
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
