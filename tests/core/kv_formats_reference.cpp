// Every KV format end to end on the host backends: random bf16 values quantized by the
// format's traits (scales calibrated on them), run, and checked twice: against the float64
// reference on the dequantized cache (the usual tolerance), and against the reference on the
// unquantized values (the format's looser quantization tolerance, so a broken quantizer fails).
#include <catch2/catch.hpp>

#include "mla/config.hpp"
#include "mla/kv_format.hpp"
#include "test_support.hpp"

using namespace mla;
using namespace mla::testing;

namespace {

void check_format(Device& device, KvFormat format, Variant variant, uint64_t seed) {
  Problem p = small_problem(3, 2, 16, 1, true, 16, variant);
  p.kv_format = format;
  InputSpec spec;
  spec.seqlens = {0, 70, 141};
  spec.seed = seed;
  HostInputs in = make_random_inputs(p, spec);
  CaseResult r = run_and_compare(device, in);
  INFO(kv_format_name(format) << " on " << device.backend_name() << " kernel=" << r.run.kernel << " seed=" << seed);
  INFO("vs reference on dequantized values: " << r.comparison.summary());
  CHECK(r.comparison.passed);
  if (!is_quantized(format)) return;
  const Comparison q = compare_to_unquantized(in);
  INFO("vs reference on the unquantized bf16 values: " << q.summary());
  CHECK(q.passed);
  CHECK(q.rel_l2_error > 0.0);  // the cache really was quantized
}

}  // namespace

TEST_CASE("every KV format on sim_tpu matches the reference and stays within its quantization error", "[kv][sim_tpu]") {
  auto device = open_device(read_config_file(std::string(MLA_SOURCE_DIR) + "/configs/sc11_fp300.json"));
  const auto seed = static_cast<uint64_t>(Catch::rngSeed()) * 7919u + 11u;
  for (const KvFormatTraits& t : kv_formats())
    for (Variant v : {Variant::latent, Variant::absorb}) check_format(*device, t.format, v, seed + static_cast<uint64_t>(t.format));
}
