#include "mla/dtype.hpp"

namespace mla {

namespace {
struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::bf16, "bf16", 2},  {DType::fp16, "fp16", 2},   {DType::fp32, "fp32", 4}, {DType::fp8_e4m3, "fp8_e4m3", 1},
    {DType::int8, "int8", 1},  {DType::int32, "int32", 4}, {DType::int64, "int64", 8}, {DType::fp64, "fp64", 8},
    {DType::uint8, "uint8", 1},
};
}  // namespace

size_t dtype_size(DType dtype) {
  for (const auto& info : kDTypes)
    if (info.dtype == dtype) return info.size;
  return 0;
}

const char* dtype_name(DType dtype) {
  for (const auto& info : kDTypes)
    if (info.dtype == dtype) return info.name;
  return "unknown";
}

std::optional<DType> parse_dtype(std::string_view name) {
  for (const auto& info : kDTypes)
    if (name == info.name) return info.dtype;
  if (name == "bfloat16") return DType::bf16;
  if (name == "float16" || name == "half") return DType::fp16;
  if (name == "float32" || name == "float") return DType::fp32;
  return std::nullopt;
}

bool is_float_activation(DType dtype) { return dtype == DType::bf16 || dtype == DType::fp16 || dtype == DType::fp32; }

}  // namespace mla
