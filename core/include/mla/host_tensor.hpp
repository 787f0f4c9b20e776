// An owning, 256-byte aligned host tensor. Used by the CLI, the tests and the reference.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <vector>

#include "mla/tensor.hpp"

namespace mla {

class HostTensor {
 public:
  HostTensor() = default;
  HostTensor(DType dtype, std::vector<int64_t> shape);

  [[nodiscard]] const TensorView& view() const { return view_; }
  [[nodiscard]] void* data() const { return view_.data; }
  [[nodiscard]] size_t bytes() const { return bytes_; }
  [[nodiscard]] bool defined() const { return storage_ != nullptr; }
  template <typename T>
  [[nodiscard]] T* as() const { return static_cast<T*>(view_.data); }

  // Element i (row-major) as a double / set from a double, whatever the dtype.
  [[nodiscard]] double get(int64_t i) const;
  void set(int64_t i, double value);
  void fill_nan();  // floats get NaN, integers get a far-out-of-range value

 private:
  std::shared_ptr<void> storage_;
  size_t bytes_ = 0;
  TensorView view_{};
};

// Reads element `index` (row-major) of any float dtype as double.
double load_element(const void* base, DType dtype, int64_t offset);
// Writes element `offset` of a float tensor view, rounding to its dtype.
void store_element(const TensorView& view, int64_t offset, double value);
// True when one of `n` consecutive elements of a float dtype is NaN or +-Inf (by bit pattern,
// so it holds whatever the compiler's floating-point flags).
bool has_nonfinite(const void* data, DType dtype, int64_t n);

}  // namespace mla
