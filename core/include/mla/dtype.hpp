// Element types. The first three are the activation/cache types every backend speaks; the
// quantized ones exist so a KV format can name them (see KvFormat in problem.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mla {

enum class DType : int {
  bf16 = 0,
  fp16 = 1,
  fp32 = 2,
  fp8_e4m3 = 3,
  int8 = 4,
  int32 = 5,
  int64 = 6,
  fp64 = 7,
  uint8 = 8,  // raw bytes: the byte-packed fp8_ds_mla KV cache
};

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);  // "bf16", "fp16", ...
std::optional<DType> parse_dtype(std::string_view name);
bool is_float_activation(DType dtype);  // bf16, fp16 or fp32

}  // namespace mla
