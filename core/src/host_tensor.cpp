#include "mla/host_tensor.hpp"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <new>

#include "mla/error.hpp"
#include "mla/half.hpp"
#include "mla/kv_format.hpp"

namespace mla {

HostTensor::HostTensor(DType dtype, std::vector<int64_t> shape) {
  if (shape.size() > static_cast<size_t>(kMaxRank))
    fail(ErrorCode::invalid_argument, "tensor rank " + std::to_string(shape.size()) + " exceeds " + std::to_string(kMaxRank));
  view_.dtype = dtype;
  view_.rank = static_cast<int>(shape.size());
  int64_t n = 1;
  for (int d = view_.rank - 1; d >= 0; --d) {
    if (shape[static_cast<size_t>(d)] < 0) fail(ErrorCode::invalid_argument, "negative tensor extent");
    view_.shape[d] = shape[static_cast<size_t>(d)];
    view_.strides[d] = n;
    if (__builtin_mul_overflow(n, view_.shape[d], &n)) n = -1;
    if (n < 0) fail(ErrorCode::out_of_memory, "host tensor of more than 2^63 elements");
  }
  // Overflow-checked: a wrapped size would allocate a tiny buffer for a huge tensor.
  if (__builtin_mul_overflow(static_cast<size_t>(n), dtype_size(dtype), &bytes_) ||
      bytes_ > std::numeric_limits<size_t>::max() - 255)
    fail(ErrorCode::out_of_memory, "host tensor of " + std::to_string(n) + " elements is larger than the address space");
  size_t rounded = (bytes_ + 255) / 256 * 256;
  void* p = std::aligned_alloc(256, rounded == 0 ? 256 : rounded);
  if (!p) fail(ErrorCode::out_of_memory, "host allocation of " + std::to_string(bytes_) + " bytes failed");
  storage_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  view_.data = p;
}

double load_element(const void* base, DType dtype, int64_t offset) {
  switch (dtype) {
    case DType::bf16: return bf16_to_float(static_cast<const uint16_t*>(base)[offset]);
    case DType::fp16: return fp16_to_float(static_cast<const uint16_t*>(base)[offset]);
    case DType::fp32: return static_cast<const float*>(base)[offset];
    case DType::fp64: return static_cast<const double*>(base)[offset];
    case DType::int32: return static_cast<const int32_t*>(base)[offset];
    case DType::int64: return static_cast<double>(static_cast<const int64_t*>(base)[offset]);
    case DType::int8: return static_cast<const int8_t*>(base)[offset];
    case DType::uint8: return static_cast<const uint8_t*>(base)[offset];
    case DType::fp8_e4m3: return fp8_e4m3_to_float(static_cast<const uint8_t*>(base)[offset]);
    default: fail(ErrorCode::unsupported, std::string("load_element: dtype ") + dtype_name(dtype));
  }
}

void store_element(const TensorView& v, int64_t offset, double value) {
  switch (v.dtype) {
    case DType::bf16: v.as<uint16_t>()[offset] = float_to_bf16(static_cast<float>(value)); break;
    case DType::fp16: v.as<uint16_t>()[offset] = float_to_fp16(static_cast<float>(value)); break;
    case DType::fp32: v.as<float>()[offset] = static_cast<float>(value); break;
    case DType::fp64: v.as<double>()[offset] = value; break;
    default: fail(ErrorCode::unsupported, std::string("store_element: dtype ") + dtype_name(v.dtype));
  }
}

bool has_nonfinite(const void* data, DType dtype, int64_t n) {
  // Exponent all ones: Inf or NaN.
  switch (dtype) {
    case DType::bf16:
    case DType::fp16: {
      const uint16_t mask = dtype == DType::bf16 ? 0x7f80u : 0x7c00u;
      const auto* p = static_cast<const uint16_t*>(data);
      for (int64_t i = 0; i < n; ++i)
        if ((p[i] & mask) == mask) return true;
      return false;
    }
    case DType::fp32: {
      const auto* p = static_cast<const uint32_t*>(data);
      for (int64_t i = 0; i < n; ++i)
        if ((p[i] & 0x7f800000u) == 0x7f800000u) return true;
      return false;
    }
    default:
      for (int64_t i = 0; i < n; ++i)
        if (!std::isfinite(load_element(data, dtype, i))) return true;
      return false;
  }
}

double HostTensor::get(int64_t i) const { return load_element(view_.data, view_.dtype, i); }

void HostTensor::set(int64_t i, double value) {
  switch (view_.dtype) {
    case DType::bf16: as<uint16_t>()[i] = float_to_bf16(static_cast<float>(value)); break;
    case DType::fp16: as<uint16_t>()[i] = float_to_fp16(static_cast<float>(value)); break;
    case DType::fp32: as<float>()[i] = static_cast<float>(value); break;
    case DType::fp64: as<double>()[i] = value; break;
    case DType::int32: as<int32_t>()[i] = static_cast<int32_t>(value); break;
    case DType::int64: as<int64_t>()[i] = static_cast<int64_t>(value); break;
    case DType::int8: as<int8_t>()[i] = static_cast<int8_t>(value); break;
    case DType::uint8: as<uint8_t>()[i] = static_cast<uint8_t>(value); break;
    case DType::fp8_e4m3: as<uint8_t>()[i] = float_to_fp8_e4m3(static_cast<float>(value)); break;
    default: fail(ErrorCode::unsupported, std::string("HostTensor::set: dtype ") + dtype_name(view_.dtype));
  }
}

void HostTensor::fill_nan() {
  const int64_t n = view_.numel();
  for (int64_t i = 0; i < n; ++i) {
    if (view_.dtype == DType::int32) as<int32_t>()[i] = 2147480000;
    else if (view_.dtype == DType::int64) as<int64_t>()[i] = std::numeric_limits<int64_t>::max() / 2;
    else if (view_.dtype == DType::int8) as<int8_t>()[i] = -128;  // a code no writer produces
    else if (view_.dtype == DType::uint8) as<uint8_t>()[i] = 0xff;
    else set(i, std::numeric_limits<double>::quiet_NaN());
  }
}

}  // namespace mla
