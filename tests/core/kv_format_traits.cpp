// The format traits one value at a time: fp8 e4m3 and int8 rounding (nearest even) and
// saturation, NaN and Inf as documented in docs/kv-formats.md, fp8_ds_mla's power-of-two group
// scales, and quantize -> dequantize within half a step for every format.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "mla/kv_format.hpp"

using namespace mla;

namespace {
const float kInf = std::numeric_limits<float>::infinity();
const float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr int64_t kDc = 512, kDr = 64;
}  // namespace

TEST_CASE("fp8 e4m3: every code round-trips with saturation at +-448 and NaN kept and Inf saturated", "[kv][traits]") {
  for (int b = 0; b < 256; ++b) {
    const auto code = static_cast<uint8_t>(b);
    const float v = fp8_e4m3_to_float(code);
    if ((b & 0x7f) == 0x7f) {
      CHECK(std::isnan(v));
      continue;
    }
    INFO("code " << b << " value " << v);
    CHECK(float_to_fp8_e4m3(v) == code);
  }
  CHECK(fp8_e4m3_to_float(0x7e) == 448.0f);
  CHECK(float_to_fp8_e4m3(448.0f) == 0x7e);
  CHECK(float_to_fp8_e4m3(449.0f) == 0x7e);
  CHECK(float_to_fp8_e4m3(1e30f) == 0x7e);
  CHECK(float_to_fp8_e4m3(-1e30f) == 0xfe);
  CHECK(float_to_fp8_e4m3(kInf) == 0x7e);
  CHECK(float_to_fp8_e4m3(-kInf) == 0xfe);
  CHECK(std::isnan(fp8_e4m3_to_float(float_to_fp8_e4m3(kNaN))));
  CHECK(std::isnan(fp8_e4m3_to_float(float_to_fp8_e4m3(-kNaN))));
}

TEST_CASE("fp8 e4m3 rounds to nearest with ties to even for normal and subnormal values", "[kv][traits]") {
  // Around 1 the step is 1/8: 1.0625 is halfway between 1 (mantissa 0) and 1.125 (mantissa 1).
  CHECK(float_to_fp8_e4m3(1.0625f) == 0x38);
  CHECK(float_to_fp8_e4m3(1.1875f) == 0x3a);  // between 1.125 (odd) and 1.25 (even)
  CHECK(float_to_fp8_e4m3(1.07f) == 0x39);    // past the tie: up
  CHECK(float_to_fp8_e4m3(432.0f) == 0x7e);   // between 416 (odd) and 448 (even)
  CHECK(float_to_fp8_e4m3(1.9375f) == 0x40);  // halfway to 2: the mantissa carries into the exponent
  // Subnormals step by 2^-9: 2^-10 is halfway between 0 and the smallest one.
  CHECK(float_to_fp8_e4m3(std::ldexp(1.0f, -10)) == 0x00);
  CHECK(float_to_fp8_e4m3(std::ldexp(3.0f, -10)) == 0x02);  // 1.5 steps: to 2 (even)
  CHECK(float_to_fp8_e4m3(std::ldexp(-5.0f, -10)) == 0x82);  // -2.5 steps: to -2
}

TEST_CASE("int8: nearest even with saturation at +-127 (never -128) and NaN to 0 and Inf saturated", "[kv][traits]") {
  CHECK(float_to_int8(2.5f) == 2);
  CHECK(float_to_int8(3.5f) == 4);
  CHECK(float_to_int8(-2.5f) == -2);
  CHECK(float_to_int8(126.6f) == 127);
  CHECK(float_to_int8(127.5f) == 127);
  CHECK(float_to_int8(1e9f) == 127);
  CHECK(float_to_int8(-1e9f) == -127);
  CHECK(float_to_int8(-128.0f) == -127);
  CHECK(float_to_int8(kInf) == 127);
  CHECK(float_to_int8(-kInf) == -127);
  CHECK(float_to_int8(kNaN) == 0);
}

TEST_CASE("fp8_ds_mla: group scales are powers of two that keep the group's largest value in range", "[kv][traits]") {
  for (float amax : {0.0f, 1e-6f, 0.3f, 1.0f, 7.0f, 448.0f, 449.0f, 1000.0f, 3.5e4f}) {
    const float s = ds_mla_group_scale(amax);
    int e = 0;
    INFO("amax " << amax << " scale " << s);
    CHECK(std::frexp(s, &e) == 0.5f);  // a power of two
    CHECK(amax / s <= 448.0f);
    if (amax / 448.0f > 1e-4f) CHECK(amax / (s / 2) > 448.0f);  // and the smallest such
  }
  CHECK(ds_mla_group_scale(448.0f) == 1.0f);

  // A token: each 128-value group gets its own scale from its finite values; NaN stays NaN,
  // Inf saturates to 448 x scale, and neither changes the scale.
  const KvFormatTraits& t = kv_format_traits(KvFormat::fp8_ds_mla);
  std::vector<float> v(kDc + kDr);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(static_cast<float>(i)) * static_cast<float>(1 + i / 128 * 10);
  v[1] = kNaN;
  v[130] = kInf;
  v[260] = -kInf;
  std::vector<uint8_t> token(static_cast<size_t>(kv_token_bytes(KvFormat::fp8_ds_mla, kDc, kDr)));
  REQUIRE(token.size() == 656);
  t.quantize(v.data(), nullptr, kDc, kDr, token.data());
  for (int g = 0; g < 4; ++g) {
    float amax = 0, scale = 0;
    for (int i = g * 128; i < (g + 1) * 128; ++i)
      if (std::isfinite(v[static_cast<size_t>(i)])) amax = std::max(amax, std::fabs(v[static_cast<size_t>(i)]));
    std::memcpy(&scale, &token[static_cast<size_t>(kDc + 4 * g)], 4);
    CHECK(scale == ds_mla_group_scale(amax));
  }
  std::vector<float> back(v.size());
  t.dequantize(token.data(), nullptr, kDc, kDr, back.data());
  CHECK(std::isnan(back[1]));
  float s1 = 0;
  std::memcpy(&s1, &token[kDc + 4], 4);
  CHECK(back[130] == 448.0f * s1);
  float s2 = 0;
  std::memcpy(&s2, &token[kDc + 8], 4);
  CHECK(back[260] == -448.0f * s2);
}

TEST_CASE("every format: quantize then dequantize is within half a step and specials are as documented", "[kv][traits]") {
  std::vector<float> v(kDc + kDr);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::cos(0.37f * static_cast<float>(i)) * 3.0f;
  for (const KvFormatTraits& t : kv_formats()) {
    INFO(t.name);
    std::vector<float> scale;
    const std::vector<int64_t> shape = kv_scale_shape(t.format, kDc, kDr);
    if (!shape.empty()) scale = kv_scale_from_amax(t.format, std::vector<float>(kDc + kDr, 3.0f));
    std::vector<uint8_t> token(static_cast<size_t>(kv_token_bytes(t.format, kDc, kDr)));
    std::vector<float> back(v.size());
    t.quantize(v.data(), scale.empty() ? nullptr : scale.data(), kDc, kDr, token.data());
    t.dequantize(token.data(), scale.empty() ? nullptr : scale.data(), kDc, kDr, back.data());
    double worst = 0;
    for (size_t i = 0; i < v.size(); ++i) worst = std::max(worst, std::fabs(static_cast<double>(back[i] - v[i])));
    // Half a step at |v| <= 3: int8 3/127/2; fp8 3 * 2^-4 / 2 (3 mantissa bits, value in [2, 4));
    // bf16 2^-7 at [2, 4) / 2... all bounded by 0.07.
    const double bound = t.format == KvFormat::int8 ? 3.0 / 127.0 / 2.0 + 1e-6 : 0.125 + 1e-6;
    CHECK(worst <= bound);

    // Specials.
    std::vector<float> special(v.size(), 1.0f);
    special[0] = kNaN;
    special[1] = kInf;
    special[2] = -kInf;
    t.quantize(special.data(), scale.empty() ? nullptr : scale.data(), kDc, kDr, token.data());
    t.dequantize(token.data(), scale.empty() ? nullptr : scale.data(), kDc, kDr, back.data());
    switch (t.format) {
      case KvFormat::int8:  // NaN -> 0, +-Inf -> +-127 x scale
        CHECK(back[0] == 0.0f);
        CHECK(back[1] == 127.0f * scale[1]);
        CHECK(back[2] == -127.0f * scale[2]);
        break;
      case KvFormat::fp8_e4m3:  // NaN stays NaN, +-Inf -> +-448 x scale
      case KvFormat::fp8_ds_mla:
        CHECK(std::isnan(back[0]));
        CHECK(std::fabs(back[1]) == std::fabs(back[2]));
        CHECK(back[1] > 0.0f);
        CHECK(back[2] < 0.0f);
        CHECK(std::isfinite(back[1]));
        break;
      default:  // plain formats keep NaN and Inf
        CHECK(std::isnan(back[0]));
        CHECK(back[1] == kInf);
        CHECK(back[2] == -kInf);
    }
  }
}
