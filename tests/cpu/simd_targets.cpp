// The fast path on every SIMD target this CPU runs: hwy::SetSupportedTargetsForTest makes
// Highway pick each target in turn, so one machine covers the baseline (the scalar/emulated
// fallback), the best target and everything between, against the float64 reference over the
// DESIGN 7 grid with poisoned pages. Inputs are fresh each run; the seed is printed on failure.
#include <catch2/catch.hpp>

#include <random>

#include <hwy/targets.h>

#include "cpu/simd_targets.hpp"
#include "test_support.hpp"

using namespace mla;
using namespace mla::testing;

namespace {

// Restores Highway's own target choice when a test ends, also when it fails.
struct ForcedTarget {
  explicit ForcedTarget(int64_t target) { hwy::SetSupportedTargetsForTest(target); }
  ~ForcedTarget() { hwy::SetSupportedTargetsForTest(0); }
  ForcedTarget(const ForcedTarget&) = delete;
  ForcedTarget& operator=(const ForcedTarget&) = delete;
};

// Every target bit this CPU supports and the cpu backend has a copy for, best first.
std::vector<int64_t> runnable_targets() {
  std::vector<int64_t> out;
  const std::vector<std::string> names = cpu::runnable_simd_targets();
  for (int64_t rest = hwy::SupportedTargets(); rest != 0; rest &= rest - 1) {
    const int64_t bit = rest & -rest;
    std::string name = hwy::TargetName(bit);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (std::find(names.begin(), names.end(), name) != names.end()) out.push_back(bit);
  }
  return out;
}

void check_case(Device& device, const Problem& p, InputSpec spec, uint64_t& seed, const std::string& expect_kernel) {
  spec.seed = ++seed;
  HostInputs in = make_random_inputs(p, spec);
  CaseResult r = run_and_compare(device, in);
  INFO(in.problem.describe() << " lengths[0]=" << in.seqlens[0] << " seed=" << spec.seed << " kernel=" << r.run.kernel);
  INFO(r.comparison.summary());
  CHECK(r.comparison.passed);
  if (!expect_kernel.empty()) CHECK(r.run.kernel == expect_kernel);
}

// The DESIGN 7 grid: lengths 0..140 around the tile and page edges, every s_q, causal on/off,
// page sizes 1/7/16/64, heads 1/3 (few-row layout) to 128, GQA, fp16 and fp32.
void check_grid(Device& device, uint64_t seed, const std::string& expect_kernel) {
  for (int64_t s_q : {1, 2, 4})
    for (bool causal : {false, true})
      for (int64_t len : {0, 1, 20, 63, 64, 65, 140})
        for (int64_t page : {16, 64}) {
          InputSpec spec;
          spec.seqlens = {static_cast<int32_t>(len), static_cast<int32_t>(len / 2 + 3)};
          check_case(device, small_problem(2, s_q, 16, 1, causal, page), spec, seed, "");
        }
  for (int64_t h_q : {1, 3, 64, 128}) {
    InputSpec spec;
    spec.seqlen = 70;
    spec.varlen = true;
    check_case(device, small_problem(3, 1, h_q, 1, false, 7), spec, seed, h_q >= 16 ? expect_kernel : "");
  }
  for (int64_t page : {1, 64}) {
    InputSpec spec;
    spec.seqlen = 90;
    spec.varlen = true;
    check_case(device, small_problem(6, 2, 16, 2, true, page), spec, seed, "");
  }
  for (DType dtype : {DType::fp16, DType::fp32}) {
    InputSpec spec;
    spec.seqlen = 77;
    spec.varlen = true;
    check_case(device, small_problem(2, 2, 8, 1, true, 16, Variant::latent, dtype), spec, seed, "");
  }
}

// A plannable problem: one sequence of at most 64 keys.
Problem one_page_problem() {
  Problem p = small_problem(1, 1, 16, 1, false, 64);
  p.num_blocks = 1;
  p.max_blocks_per_seq = 1;
  return p;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

TEST_CASE("cpu fast path matches the reference on every SIMD target this CPU runs", "[cpu][simd]") {
  const std::vector<int64_t> targets = runnable_targets();
  REQUIRE(targets.size() >= 2);  // at least the best target and the fallback
  const uint64_t seed = std::random_device{}();
  for (int64_t target : targets) {
    const std::string name = lower(hwy::TargetName(target));
    INFO("forced target " << name << ", seed base " << seed);
    ForcedTarget forced(target);
    REQUIRE(cpu::best_simd_kernel().target == name);
    // "auto": Highway's pick, or the AVX-512 BF16 kernel where the pick is AVX3 on a bf16 CPU.
    auto device = open_device(config_for("cpu", {{"cpu", {{"kv_tile_tokens", 32}}}}));
    const bool bf16 = cpu::best_simd_target_is_avx512() && cpu::cpu_has_avx512_bf16();
    check_grid(*device, seed, bf16 ? "cpu_flash_decode_avx512bf16" : "cpu_flash_decode_hwy_" + name);
    // The Highway copy itself, also where "auto" preferred the BF16 kernel.
    if (bf16) {
      auto hwy_device = open_device(config_for("cpu", {{"cpu", {{"isa", name}, {"kv_tile_tokens", 32}}}}));
      check_grid(*hwy_device, seed + 1000, "cpu_flash_decode_hwy_" + name);
    }
  }
}

TEST_CASE("cpu.isa names a Highway target, and one this CPU cannot run is refused at plan", "[cpu][simd]") {
  const std::vector<std::string> runnable = cpu::runnable_simd_targets();
  REQUIRE(!runnable.empty());
  auto device = open_device(config_for("cpu", {{"cpu", {{"isa", runnable.back()}}}}));
  CHECK(device->plan(one_page_problem())->kernel_name() == "cpu_flash_decode_hwy_" + runnable.back());
  CHECK(cpu::portable_simd_kernel().target == runnable.back());
  for (const std::string& name : cpu::simd_target_names()) {
    if (std::find(runnable.begin(), runnable.end(), name) != runnable.end()) continue;
    auto other = open_device(config_for("cpu", {{"cpu", {{"isa", name}}}}));
    try {
      (void)other->plan(one_page_problem());
      FAIL("plan accepted cpu.isa = " << name);
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::unsupported);
      CHECK_THAT(e.what(), Catch::Contains(name) && Catch::Contains("runnable"));
    }
  }
}
