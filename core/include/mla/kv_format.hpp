// KV-cache formats: how one token's 576 values (d_c latent, then d_r rope) are stored, and the
// one table that says everything a backend, the reference, the CLI and the file readers need to
// know about a format (in the spirit of ggml's type traits). Adding a format is one entry in
// kv_format.cpp's table plus the kernels that read it.
//
// | format       | bytes/token (576) | token layout                                  | value             |
// | bf16, fp16   | 1152              | 576 values                                    | as stored         |
// | fp32         | 2304              | 576 values                                    | as stored         |
// | fp8_e4m3     | 576               | 576 fp8 e4m3                                  | fp8 * kv_scale[0] |
// | fp8_ds_mla   | 656               | 512 fp8, 4 fp32 scales (one per 128), 64 bf16 | fp8 * scale[c/128]; rope as stored |
// | int8         | 576               | 576 int8                                      | int8 * kv_scale[c] |
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mla/dtype.hpp"

namespace mla {

// Values equal the C ABI's MLA_KV_FORMAT_* (0 there means "take the legacy kv_dtype field").
enum class KvFormat : int { bf16 = 1, fp16 = 2, fp32 = 3, fp8_e4m3 = 4, fp8_ds_mla = 5, int8 = 6 };

// Where a format keeps its scales.
enum class KvScaleKind : int {
  none = 0,         // plain values
  per_tensor = 1,   // kv_scale float32 [1]
  per_channel = 2,  // kv_scale float32 [d_c + d_r]
  in_token = 3,     // float32 scales inside each token, one per kKvScaleGroup latent values
};

inline constexpr int64_t kKvScaleGroup = 128;  // latent values per in-token scale (fp8_ds_mla)

struct KvFormatTraits {
  KvFormat format;
  const char* name;          // "fp8_e4m3": what --kv-format and the docs call it
  DType element;             // dtype of the kv_cache tensor (uint8 for the byte-packed layout)
  KvScaleKind scale;
  const char* description;   // one line for --help and the docs
  // Rel. L2 error of `out` a cache in this format may add against the same values in bf16
  // (random inputs, the compare harness's quantization check): loose enough for honest
  // rounding, tight enough that a broken quantizer (wrong scale, wrong rounding) fails.
  double quantization_tolerance;

  // Elements of `element` per token (the kv_cache tensor's last dimension).
  int64_t (*token_elements)(int64_t d_c, int64_t d_r);
  // The d_c + d_r values of one token as float. `kv_scale` is the format's kv_scale operand
  // (null for none / in_token).
  void (*dequantize)(const void* token, const float* kv_scale, int64_t d_c, int64_t d_r, float* out);
  // One token's values quantized into its storage: what write_kv does per token. Rounds to
  // nearest even and saturates (fp8 to +-448, int8 to +-127); in_token formats compute their
  // power-of-two scales here.
  void (*quantize)(const float* values, const float* kv_scale, int64_t d_c, int64_t d_r, void* token);
  // Fills one token's storage with a pattern that must never be read (NaN where the format
  // has one, out-of-range codes otherwise): the tests' poison for rows past each length.
  void (*poison)(void* token, int64_t d_c, int64_t d_r);
};

// Every format, in enum order.
std::span<const KvFormatTraits> kv_formats();
// The traits of a format; Error(invalid_argument) for a value outside the enum.
const KvFormatTraits& kv_format_traits(KvFormat format);
const char* kv_format_name(KvFormat format);
std::optional<KvFormat> parse_kv_format(std::string_view name);
std::string kv_format_names();  // "bf16, fp16, fp32, fp8_e4m3, fp8_ds_mla, int8"
// The plain format whose element is `dtype` (bf16, fp16, fp32), if there is one.
std::optional<KvFormat> plain_kv_format(DType dtype);
// The format whose kv_cache element is `dtype`: each format has its own element type, so a
// cache read from a file names its format.
std::optional<KvFormat> kv_format_of_element(DType dtype);
inline bool is_quantized(KvFormat format) { return format >= KvFormat::fp8_e4m3; }

// Bytes of one token's entry for one KV head.
int64_t kv_token_bytes(KvFormat format, int64_t d_c, int64_t d_r);
// The kv_scale operand's shape: {} (no operand), {1} or {d_c + d_r}.
std::vector<int64_t> kv_scale_shape(KvFormat format, int64_t d_c, int64_t d_r);

// kv_scale from the largest magnitude seen per channel (`channel_amax`, d_c + d_r values): per
// tensor max / 448, per channel amax_c / 127 (a zero channel gets scale 1). Empty for formats
// without a kv_scale operand. What a runtime calibrates once; the random inputs use it.
std::vector<float> kv_scale_from_amax(KvFormat format, const std::vector<float>& channel_amax);

// Scalar fp8 e4m3 (the "fn" variant: no Inf, NaN = S.1111.111) conversions.
float fp8_e4m3_to_float(uint8_t bits);
uint8_t float_to_fp8_e4m3(float value);  // nearest even, saturating to +-448, NaN kept
int8_t float_to_int8(float value);       // nearest even, saturating to +-127, NaN -> 0
// The power-of-two scale of one fp8_ds_mla group from its largest finite magnitude.
float ds_mla_group_scale(float amax);

}  // namespace mla
