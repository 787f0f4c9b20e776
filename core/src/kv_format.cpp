#include "mla/kv_format.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "mla/error.hpp"
#include "mla/half.hpp"
#include "mla/kv_codec.hpp"

namespace mla {

float fp8_e4m3_to_float(uint8_t bits) { return kv_codec::fp8_e4m3_to_float(bits); }
uint8_t float_to_fp8_e4m3(float value) { return kv_codec::float_to_fp8_e4m3(value); }
int8_t float_to_int8(float value) { return kv_codec::float_to_int8(value); }
float ds_mla_group_scale(float amax) { return kv_codec::ds_mla_group_scale(amax); }

namespace {

// ---- plain formats: the elements are the values ----------------------------------------
template <DType D>
int64_t plain_elements(int64_t d_c, int64_t d_r) {
  return d_c + d_r;
}

template <DType D>
void plain_dequantize(const void* token, const float*, int64_t d_c, int64_t d_r, float* out) {
  const int64_t n = d_c + d_r;
  if constexpr (D == DType::fp32) {
    std::memcpy(out, token, static_cast<size_t>(n) * sizeof(float));
  } else {
    const auto* bits = static_cast<const uint16_t*>(token);
    for (int64_t i = 0; i < n; ++i) out[i] = D == DType::bf16 ? bf16_to_float(bits[i]) : fp16_to_float(bits[i]);
  }
}

template <DType D>
void plain_quantize(const float* values, const float*, int64_t d_c, int64_t d_r, void* token) {
  const int64_t n = d_c + d_r;
  if constexpr (D == DType::fp32) {
    std::memcpy(token, values, static_cast<size_t>(n) * sizeof(float));
  } else {
    auto* bits = static_cast<uint16_t*>(token);
    for (int64_t i = 0; i < n; ++i) bits[i] = D == DType::bf16 ? float_to_bf16(values[i]) : float_to_fp16(values[i]);
  }
}

template <DType D>
void plain_poison(void* token, int64_t d_c, int64_t d_r) {
  const int64_t n = d_c + d_r;
  if constexpr (D == DType::fp32) {
    std::fill_n(static_cast<float*>(token), n, std::numeric_limits<float>::quiet_NaN());
  } else {
    std::fill_n(static_cast<uint16_t*>(token), n, static_cast<uint16_t>(D == DType::bf16 ? 0x7fc0u : 0x7e00u));
  }
}

// ---- fp8_e4m3: one per-tensor scale ------------------------------------------------------
void fp8_dequantize(const void* token, const float* kv_scale, int64_t d_c, int64_t d_r, float* out) {
  const auto* bytes = static_cast<const uint8_t*>(token);
  for (int64_t i = 0; i < d_c + d_r; ++i) out[i] = fp8_e4m3_to_float(bytes[i]) * kv_scale[0];
}

void fp8_quantize(const float* values, const float* kv_scale, int64_t d_c, int64_t d_r, void* token) {
  auto* bytes = static_cast<uint8_t*>(token);
  for (int64_t i = 0; i < d_c + d_r; ++i) bytes[i] = float_to_fp8_e4m3(values[i] / kv_scale[0]);
}

void fp8_poison(void* token, int64_t d_c, int64_t d_r) { std::memset(token, 0xff, static_cast<size_t>(d_c + d_r)); }

// ---- int8: one scale per channel ---------------------------------------------------------
void int8_dequantize(const void* token, const float* kv_scale, int64_t d_c, int64_t d_r, float* out) {
  const auto* codes = static_cast<const int8_t*>(token);
  for (int64_t i = 0; i < d_c + d_r; ++i) out[i] = static_cast<float>(codes[i]) * kv_scale[i];
}

void int8_quantize(const float* values, const float* kv_scale, int64_t d_c, int64_t d_r, void* token) {
  auto* codes = static_cast<int8_t*>(token);
  for (int64_t i = 0; i < d_c + d_r; ++i) codes[i] = float_to_int8(values[i] / kv_scale[i]);
}

// -128 is a code no writer produces (it saturates at -127); read, it is a large wrong value.
void int8_poison(void* token, int64_t d_c, int64_t d_r) { std::memset(token, 0x80, static_cast<size_t>(d_c + d_r)); }

// ---- fp8_ds_mla: d_c fp8, d_c/128 float32 scales, d_r bf16 (DeepSeek's 656-byte token) ----
int64_t ds_mla_elements(int64_t d_c, int64_t d_r) { return d_c + 4 * (d_c / kKvScaleGroup) + 2 * d_r; }

void ds_mla_dequantize(const void* token, const float*, int64_t d_c, int64_t d_r, float* out) {
  const auto* bytes = static_cast<const uint8_t*>(token);
  for (int64_t g = 0; g < d_c / kKvScaleGroup; ++g) {
    float scale;
    std::memcpy(&scale, bytes + d_c + 4 * g, sizeof scale);
    for (int64_t i = g * kKvScaleGroup; i < (g + 1) * kKvScaleGroup; ++i) out[i] = fp8_e4m3_to_float(bytes[i]) * scale;
  }
  const uint8_t* rope = bytes + d_c + 4 * (d_c / kKvScaleGroup);
  for (int64_t r = 0; r < d_r; ++r) {
    uint16_t bits;
    std::memcpy(&bits, rope + 2 * r, sizeof bits);
    out[d_c + r] = bf16_to_float(bits);
  }
}

void ds_mla_quantize(const float* values, const float*, int64_t d_c, int64_t d_r, void* token) {
  auto* bytes = static_cast<uint8_t*>(token);
  for (int64_t g = 0; g < d_c / kKvScaleGroup; ++g) {
    float amax = 0.0f;  // over finite values: NaN stays NaN and Inf saturates, neither sets the scale
    for (int64_t i = g * kKvScaleGroup; i < (g + 1) * kKvScaleGroup; ++i)
      if (std::isfinite(values[i])) amax = std::max(amax, std::fabs(values[i]));
    const float scale = ds_mla_group_scale(amax);
    std::memcpy(bytes + d_c + 4 * g, &scale, sizeof scale);
    for (int64_t i = g * kKvScaleGroup; i < (g + 1) * kKvScaleGroup; ++i) bytes[i] = float_to_fp8_e4m3(values[i] / scale);
  }
  uint8_t* rope = bytes + d_c + 4 * (d_c / kKvScaleGroup);
  for (int64_t r = 0; r < d_r; ++r) {
    const uint16_t bits = float_to_bf16(values[d_c + r]);
    std::memcpy(rope + 2 * r, &bits, sizeof bits);
  }
}

void ds_mla_poison(void* token, int64_t d_c, int64_t d_r) {
  auto* bytes = static_cast<uint8_t*>(token);
  std::memset(bytes, 0xff, static_cast<size_t>(d_c));  // fp8 NaN
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t g = 0; g < d_c / kKvScaleGroup; ++g) std::memcpy(bytes + d_c + 4 * g, &nan, sizeof nan);
  uint8_t* rope = bytes + d_c + 4 * (d_c / kKvScaleGroup);
  const uint16_t bf16_nan = 0x7fc0u;
  for (int64_t r = 0; r < d_r; ++r) std::memcpy(rope + 2 * r, &bf16_nan, sizeof bf16_nan);
}

int64_t byte_elements(int64_t d_c, int64_t d_r) { return d_c + d_r; }

// The table. Tolerances: measured quantization error on the compare harness's random inputs
// (docs/kv-formats.md) with about 2x headroom; bf16 itself is the baseline.
constexpr KvFormatTraits kTraits[] = {
    {KvFormat::bf16, "bf16", DType::bf16, KvScaleKind::none, "bfloat16 values (1152 bytes per token)", 0.0,
     plain_elements<DType::bf16>, plain_dequantize<DType::bf16>, plain_quantize<DType::bf16>, plain_poison<DType::bf16>},
    {KvFormat::fp16, "fp16", DType::fp16, KvScaleKind::none, "float16 values (1152 bytes per token)", 0.01,
     plain_elements<DType::fp16>, plain_dequantize<DType::fp16>, plain_quantize<DType::fp16>, plain_poison<DType::fp16>},
    {KvFormat::fp32, "fp32", DType::fp32, KvScaleKind::none, "float32 values (2304 bytes per token)", 0.01,
     plain_elements<DType::fp32>, plain_dequantize<DType::fp32>, plain_quantize<DType::fp32>, plain_poison<DType::fp32>},
    {KvFormat::fp8_e4m3, "fp8_e4m3", DType::fp8_e4m3, KvScaleKind::per_tensor,
     "fp8 e4m3 values times one per-tensor kv_scale [1] (576 bytes per token)", 0.08, byte_elements, fp8_dequantize,
     fp8_quantize, fp8_poison},
    {KvFormat::fp8_ds_mla, "fp8_ds_mla", DType::uint8, KvScaleKind::in_token,
     "DeepSeek's 656-byte token: 512 fp8 e4m3, 4 float32 power-of-two scales (one per 128), 64 bf16 rope", 0.08,
     ds_mla_elements, ds_mla_dequantize, ds_mla_quantize, ds_mla_poison},
    {KvFormat::int8, "int8", DType::int8, KvScaleKind::per_channel,
     "int8 codes times a per-channel kv_scale [576] (576 bytes per token)", 0.03, byte_elements, int8_dequantize,
     int8_quantize, int8_poison},
};

}  // namespace

std::span<const KvFormatTraits> kv_formats() { return kTraits; }

const KvFormatTraits& kv_format_traits(KvFormat format) {
  for (const auto& t : kTraits)
    if (t.format == format) return t;
  fail(ErrorCode::invalid_argument, "kv format: unknown value " + std::to_string(static_cast<int>(format)) +
                                        " (expected one of " + kv_format_names() + ")");
}

const char* kv_format_name(KvFormat format) {
  for (const auto& t : kTraits)
    if (t.format == format) return t.name;
  return "unknown";
}

std::optional<KvFormat> parse_kv_format(std::string_view name) {
  for (const auto& t : kTraits)
    if (name == t.name) return t.format;
  return std::nullopt;
}

std::string kv_format_names() {
  std::string s;
  for (const auto& t : kTraits) s += (s.empty() ? "" : ", ") + std::string(t.name);
  return s;
}

std::optional<KvFormat> plain_kv_format(DType dtype) {
  for (const auto& t : kTraits)
    if (t.scale == KvScaleKind::none && t.element == dtype) return t.format;
  return std::nullopt;
}

std::optional<KvFormat> kv_format_of_element(DType dtype) {
  for (const auto& t : kTraits)
    if (t.element == dtype) return t.format;
  return std::nullopt;
}

int64_t kv_token_bytes(KvFormat format, int64_t d_c, int64_t d_r) {
  const KvFormatTraits& t = kv_format_traits(format);
  return t.token_elements(d_c, d_r) * static_cast<int64_t>(dtype_size(t.element));
}

std::vector<int64_t> kv_scale_shape(KvFormat format, int64_t d_c, int64_t d_r) {
  switch (kv_format_traits(format).scale) {
    case KvScaleKind::per_tensor: return {1};
    case KvScaleKind::per_channel: return {d_c + d_r};
    default: return {};
  }
}

std::vector<float> kv_scale_from_amax(KvFormat format, const std::vector<float>& channel_amax) {
  switch (kv_format_traits(format).scale) {
    case KvScaleKind::per_tensor: {
      float amax = 0.0f;
      for (float a : channel_amax) amax = std::max(amax, a);
      return {amax > 0.0f ? amax / 448.0f : 1.0f};
    }
    case KvScaleKind::per_channel: {
      std::vector<float> s(channel_amax.size());
      for (size_t c = 0; c < s.size(); ++c) s[c] = channel_amax[c] > 0.0f ? channel_amax[c] / 127.0f : 1.0f;
      return s;
    }
    default: return {};
  }
}

}  // namespace mla
