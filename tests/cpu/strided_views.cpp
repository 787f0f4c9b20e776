// Runtimes hand over views into larger buffers: padded head and token strides must work and
// the padding must never be read (it is poisoned) or written (it is checked).
#include <catch2/catch.hpp>

#include <cmath>

#include "mla/host_tensor.hpp"
#include "test_support.hpp"

using namespace mla;

namespace {

// A copy of `t` inside a buffer whose innermost dimension is padded by `pad` elements (NaN).
struct Padded {
  HostTensor storage;
  TensorView view;
};

Padded pad_last_dim(const HostTensor& t, int64_t pad) {
  const TensorView& v = t.view();
  std::vector<int64_t> shape(v.shape.begin(), v.shape.begin() + v.rank);
  shape.back() += pad;
  Padded p{HostTensor(v.dtype, shape), {}};
  p.storage.fill_nan();
  p.view = v;
  p.view.data = p.storage.data();
  int64_t stride = 1;
  for (int d = v.rank - 1; d >= 0; --d) {
    p.view.strides[d] = stride;
    stride *= shape[static_cast<size_t>(d)];
  }
  const int64_t inner = v.shape[v.rank - 1], rows = v.numel() / inner;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < inner; ++k) p.storage.set(r * (inner + pad) + k, t.get(r * inner + k));
  return p;
}

}  // namespace

TEST_CASE("cpu paths accept padded strides and leave padding alone", "[cpu]") {
  for (const char* isa : {"auto", "portable"}) {
    auto device = open_device(testing::config_for("cpu", {{"cpu", {{"isa", isa}}}}));
    InputSpec spec;
    spec.seqlen = 120;
    spec.varlen = true;
    spec.seed = 77;
    HostInputs in = make_random_inputs(testing::small_problem(3, 2, 8, 2, true, 16), spec);
    Padded q = pad_last_dim(in.q, 64), kv = pad_last_dim(in.kv_cache, 64), out = pad_last_dim(in.out, 32);
    RunArgs args = in.args();
    args.q = q.view;
    args.kv_cache = kv.view;
    args.out = out.view;
    auto plan = device->plan(in.problem);
    plan->run(args, *plan->schedule(in.cache_seqlens.view()));

    // Gather the strided output back into the dense tensor for comparison.
    const int64_t w = in.problem.d_v(), rows = in.out.view().numel() / w;
    bool padding_untouched = true;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t k = 0; k < w; ++k) in.out.set(r * w + k, out.storage.get(r * (w + 32) + k));
      for (int64_t k = w; k < w + 32; ++k) padding_untouched &= std::isnan(out.storage.get(r * (w + 32) + k));
    }
    CHECK(padding_untouched);
    ReferenceOutput ref = reference_decode(in.problem, in.args());
    Comparison c = compare_to_reference(in.problem, ref, in.out.view(), in.lse.view());
    INFO(isa << ": " << c.summary());
    CHECK(c.passed);
  }
}
