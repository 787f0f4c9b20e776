// The CPU fast path against the float64 reference on shapes beyond the grid (long splits,
// large batches, other dtypes, absorb, every KV format), with poisoned rows past each length
// and junk block-table entries.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>

#include "cpu/simd_targets.hpp"
#include "mla/kv_format.hpp"
#include "test_support.hpp"

using namespace mla;
using namespace mla::testing;

namespace {

void check_case(Device& device, const Problem& p, const InputSpec& spec) {
  HostInputs in = make_random_inputs(p, spec);
  CaseResult r = run_and_compare(device, in);
  INFO(in.problem.describe() << " kv " << kv_format_name(p.kv_format) << " lengths[0]=" << in.seqlens[0]
                             << " seed=" << spec.seed << " kernel=" << r.run.kernel);
  INFO(r.comparison.summary());
  CHECK(r.comparison.passed);
  if (!is_quantized(p.kv_format)) return;
  const Comparison q = compare_to_unquantized(in);
  INFO("vs reference on the unquantized bf16 values: " << q.summary());
  CHECK(q.passed);
}

Problem with_format(Problem p, KvFormat format) {
  p.kv_format = format;
  return p;
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

TEST_CASE("cpu: every KV format through split-KV merges, GQA, absorb and the reference path", "[cpu][kv]") {
  auto fast = open_device(config_for("cpu"));
  auto reference = open_device(config_for("cpu", {{"cpu", {{"path", "reference"}}}}));
  const auto seed = static_cast<uint64_t>(std::random_device{}());
  for (const KvFormatTraits& kv : kv_formats()) {
    InputSpec split;
    split.seqlens = {1500};  // one sequence: split into chunks whose partials are merged
    split.seed = seed + static_cast<uint64_t>(kv.format);
    check_case(*fast, with_format(small_problem(1, 1, 16, 1, false, 64), kv.format), split);
    InputSpec varlen;
    varlen.seqlen = 100;
    varlen.varlen = true;
    varlen.seed = split.seed + 100;
    check_case(*fast, with_format(small_problem(3, 1, 32, 2, false, 16), kv.format), varlen);
    check_case(*fast, with_format(small_problem(2, 2, 8, 1, true, 32, Variant::absorb), kv.format), varlen);
    check_case(*reference, with_format(small_problem(2, 2, 8, 1, true, 32), kv.format), varlen);
  }
}

TEST_CASE("cpu explain names the kernel and how each KV format is read", "[cpu][kv]") {
  auto device = open_device(config_for("cpu"));
  Problem p = small_problem(1, 1, 128, 1, false, 64);
  p.num_blocks = 1;
  p.max_blocks_per_seq = 1;
  p.kv_format = KvFormat::int8;
  // Where "auto" picks the AVX-512 BF16 kernel (bf16 queries, the CPU has avx512_bf16), it also
  // takes the 8-bit formats, dequantizing each tile to bf16; elsewhere the Highway kernel folds
  // the scales. fp16 / fp32 caches are widened by the Highway kernel everywhere.
  const bool bf16_cpu = cpu::best_simd_target_is_avx512() && cpu::cpu_has_avx512_bf16();
  if (bf16_cpu) {
    CHECK_THAT(device->plan(p)->explain(), Catch::Contains("each KV tile dequantized to bf16") &&
                                               Catch::Contains("int8 codes; kv_scale folded into q and out"));
    CHECK(device->plan(p)->kernel_name() == "cpu_flash_decode_avx512bf16");
  } else {
    CHECK_THAT(device->plan(p)->explain(),
               Catch::Contains("Highway kernel") && Catch::Contains("per-channel kv_scale, which is folded into q"));
  }
  auto hwy = open_device(config_for("cpu", {{"cpu", {{"isa", cpu::best_simd_kernel().target}}}}));
  CHECK_THAT(hwy->plan(p)->explain(), Catch::Contains("per-channel kv_scale, which is folded into q"));
  p.kv_format = KvFormat::fp8_e4m3;
  CHECK_THAT(hwy->plan(p)->explain(), Catch::Contains("per-tensor kv_scale, which is folded into q"));
  p.kv_format = KvFormat::fp8_ds_mla;
  CHECK_THAT(hwy->plan(p)->explain(), Catch::Contains("with its in-token scales"));
  p.kv_format = KvFormat::fp16;
  CHECK_THAT(device->plan(p)->explain(), Catch::Contains("fp16 cache widened"));
  if (bf16_cpu) CHECK_THAT(device->plan(p)->explain(), Catch::Contains("reads bf16 and 8-bit caches"));
}

TEST_CASE("cpu: a NaN or Inf kv_scale gives NaN rows wherever the reference does", "[cpu][kv][nonfinite]") {
  auto device = open_device(config_for("cpu"));
  const auto seed = static_cast<uint64_t>(std::random_device{}());
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  for (KvFormat format : {KvFormat::fp8_e4m3, KvFormat::int8})
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
      InputSpec spec;
      spec.seqlens = {static_cast<int32_t>(600 + rng() % 900), 0, 37};  // a split sequence and an empty one
      spec.seed = rng();
      HostInputs in = make_random_inputs(with_format(small_problem(3, 1, 16, 1, false, 16), format), spec);
      const int64_t channels = in.kv_scale.view().numel();
      in.kv_scale.as<float>()[static_cast<int64_t>(rng() % static_cast<uint64_t>(channels))] = bad;
      CaseResult r = run_and_compare(*device, in);
      INFO(kv_format_name(format) << " kv_scale holding " << bad << ": " << r.comparison.summary());
      CHECK(r.comparison.nonfinite_mismatches == 0);
      CHECK(r.comparison.unwritten == 0);
      CHECK(r.comparison.passed);
    }
}
