// The SIMD dequantization of mla/simd/widen-inl.h (what the cpu task kernel and sim_tpu read
// caches with) against the scalar traits of kv_format.cpp (the definition), bit for bit, on
// every SIMD target this CPU runs: all 256 fp8 e4m3 and int8 codes, random fp8_ds_mla tokens,
// with and without the kv_scale. This file is compiled once per target by foreach_target; the
// test cases sit in the HWY_ONCE part and call each copy through dynamic dispatch.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/dequantize_targets.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep

#include <hwy/highway.h>

#include "mla/simd/widen-inl.h"

// DeepSeek's widths, as constants so that the compiler knows every loop's bound (defined once:
// foreach_target includes this file once per target).
#ifndef MLA_TESTS_DEQUANTIZE_WIDTHS
#define MLA_TESTS_DEQUANTIZE_WIDTHS
namespace mla::testing {
constexpr int64_t kDc = 512, kDr = 64, kDqk = kDc + kDr;
}  // namespace mla::testing
#endif

HWY_BEFORE_NAMESPACE();
namespace mla::testing::HWY_NAMESPACE {

void DequantizeToken(const void* token, KvFormat format, const float* kv_scale, bool apply_scales, float* dst) {
  mla::HWY_NAMESPACE::dequantize_token_f32(token, format, kv_scale, kDc, kDr, apply_scales, dst);
}

void Fp8ToF32(const uint8_t* src, int64_t count, float scale, float* dst) {
  mla::HWY_NAMESPACE::fp8_e4m3_to_f32(src, count, scale, dst);
}

void Int8ToF32(const int8_t* src, int64_t count, const float* scale, float* dst) {
  mla::HWY_NAMESPACE::int8_to_f32(src, count, scale, dst);
}

int64_t CompiledTarget() { return HWY_TARGET; }

}  // namespace mla::testing::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "cpu/forced_target.hpp"
#include "mla/half.hpp"

namespace mla::testing {

HWY_EXPORT(DequantizeToken);
HWY_EXPORT(Fp8ToF32);
HWY_EXPORT(Int8ToF32);
HWY_EXPORT(CompiledTarget);

namespace {

uint32_t bits_of(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

// Element by element; the first difference is named by index and both bit patterns.
void require_same_bits(const std::vector<float>& simd, const std::vector<float>& scalar, const std::string& what) {
  REQUIRE(simd.size() == scalar.size());
  size_t i = 0;
  while (i < simd.size() && bits_of(simd[i]) == bits_of(scalar[i])) ++i;
  if (i == simd.size()) return;
  FAIL(what << ": element " << i << " simd " << simd[i] << " (0x" << std::hex << bits_of(simd[i]) << ") scalar "
            << scalar[i] << " (0x" << bits_of(scalar[i]) << std::dec << ")");
}

// One token through the target's SIMD path and through the traits (with kv_scale, or with
// ones where the SIMD path leaves the scale out).
void check_token(const void* token, KvFormat format, const std::vector<float>& kv_scale, const std::string& what) {
  const KvFormatTraits& t = kv_format_traits(format);
  const std::vector<float> ones(static_cast<size_t>(kDqk), 1.0f);
  for (bool apply : {true, false}) {
    std::vector<float> simd(static_cast<size_t>(kDqk)), scalar(static_cast<size_t>(kDqk));
    HWY_DYNAMIC_DISPATCH(DequantizeToken)(token, format, kv_scale.empty() ? nullptr : kv_scale.data(), apply, simd.data());
    const bool scaled = !kv_scale.empty() && apply;
    t.dequantize(token, kv_scale.empty() ? nullptr : (scaled ? kv_scale.data() : ones.data()), kDc, kDr, scalar.data());
    require_same_bits(simd, scalar, what + (apply ? " (scales applied)" : " (kv_scale left out)"));
  }
}

// kv_scale values over a wide range of magnitudes, both signs.
float random_scale(std::mt19937& rng) {
  std::uniform_real_distribution<float> mant(1.0f, 2.0f);
  std::uniform_int_distribution<int> exp(-20, 20), sign(0, 1);
  return (sign(rng) ? -1.0f : 1.0f) * std::ldexp(mant(rng), exp(rng));
}

void check_all_codes(std::mt19937& rng) {
  // Every code in every lane position: 3 x 256 codes plus a 5-code tail, shifted by one per pass.
  std::vector<uint8_t> codes(3 * 256 + 5);
  for (size_t shift : {size_t{0}, size_t{1}, size_t{7}}) {
    for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<uint8_t>(i + shift);
    const auto n = static_cast<int64_t>(codes.size());
    for (float scale : {1.0f, 0.5f, random_scale(rng), random_scale(rng)}) {
      std::vector<float> simd(codes.size()), scalar(codes.size());
      HWY_DYNAMIC_DISPATCH(Fp8ToF32)(codes.data(), n, scale, simd.data());
      for (size_t i = 0; i < codes.size(); ++i) scalar[i] = fp8_e4m3_to_float(codes[i]) * scale;
      require_same_bits(simd, scalar, "fp8_e4m3_to_f32 scale " + std::to_string(scale));
    }
    std::vector<float> channel(codes.size());
    for (float& s : channel) s = random_scale(rng);
    const auto* signed_codes = reinterpret_cast<const int8_t*>(codes.data());
    for (const float* scale : {static_cast<const float*>(nullptr), static_cast<const float*>(channel.data())}) {
      std::vector<float> simd(codes.size()), scalar(codes.size());
      HWY_DYNAMIC_DISPATCH(Int8ToF32)(signed_codes, n, scale, simd.data());
      for (size_t i = 0; i < codes.size(); ++i) scalar[i] = static_cast<float>(signed_codes[i]) * (scale ? scale[i] : 1.0f);
      require_same_bits(simd, scalar, scale ? "int8_to_f32 per-channel scale" : "int8_to_f32 unscaled");
    }
  }
}

void check_tokens(std::mt19937& rng) {
  std::uniform_int_distribution<int> byte(0, 255);
  // fp8_e4m3 and int8: tokens holding every code (576 = 2 x 256 + 64), then random tokens.
  std::vector<uint8_t> token(static_cast<size_t>(kDqk));
  for (int pass = 0; pass < 4; ++pass) {
    for (size_t i = 0; i < token.size(); ++i) token[i] = static_cast<uint8_t>(pass == 0 ? i : static_cast<size_t>(byte(rng)));
    check_token(token.data(), KvFormat::fp8_e4m3, {random_scale(rng)}, "fp8_e4m3 token " + std::to_string(pass));
    std::vector<float> channel(static_cast<size_t>(kDqk));
    for (float& s : channel) s = random_scale(rng);
    check_token(token.data(), KvFormat::int8, channel, "int8 token " + std::to_string(pass));
  }
  // fp8_ds_mla: random bytes (every fp8 code, NaN included) with random power-of-two scales
  // and random bf16 rope; then tokens quantized from random values by the traits.
  const int64_t bytes = kv_token_bytes(KvFormat::fp8_ds_mla, kDc, kDr);
  std::vector<uint8_t> ds(static_cast<size_t>(bytes));
  std::normal_distribution<float> normal;
  std::vector<float> values(static_cast<size_t>(kDqk));
  for (int pass = 0; pass < 16; ++pass) {
    if (pass % 2 == 0) {
      for (uint8_t& b : ds) b = static_cast<uint8_t>(byte(rng));
      for (int64_t g = 0; g < kDc / kKvScaleGroup; ++g) {
        const float scale = ds_mla_group_scale(std::fabs(random_scale(rng)));
        std::memcpy(&ds[static_cast<size_t>(kDc + 4 * g)], &scale, sizeof scale);
      }
    } else {
      const float spread = std::ldexp(1.0f, pass - 8);
      for (float& v : values) v = spread * normal(rng);
      kv_format_traits(KvFormat::fp8_ds_mla).quantize(values.data(), nullptr, kDc, kDr, ds.data());
    }
    check_token(ds.data(), KvFormat::fp8_ds_mla, {}, "fp8_ds_mla token " + std::to_string(pass));
  }
}

// Highway's copies this CPU runs: each supported target in turn, the copy dispatch then picks.
std::set<int64_t> check_every_target(void (*check)(std::mt19937&), uint64_t seed) {
  std::set<int64_t> ran;
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    ForcedTarget forced(target);
    const int64_t picked = HWY_DYNAMIC_DISPATCH(CompiledTarget)();
    INFO("target " << hwy::TargetName(picked) << ", seed " << seed);
    std::mt19937 rng(static_cast<std::mt19937::result_type>(seed));
    check(rng);
    ran.insert(picked);
  }
  return ran;
}

}  // namespace

TEST_CASE("SIMD fp8 e4m3 and int8 conversion equals the scalar traits on all 256 codes, every target",
          "[cpu][simd][kv]") {
  const uint64_t seed = std::random_device{}();
  CHECK(check_every_target(check_all_codes, seed).size() >= 2);  // at least the best target and the fallback
}

TEST_CASE("SIMD token dequantization equals the scalar traits for fp8_e4m3, int8 and fp8_ds_mla, every target",
          "[cpu][simd][kv]") {
  const uint64_t seed = std::random_device{}();
  CHECK(check_every_target(check_tokens, seed).size() >= 2);
}

}  // namespace mla::testing
#endif  // HWY_ONCE
