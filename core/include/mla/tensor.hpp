// A non-owning view of a tensor: pointer, dtype, shape, strides (in elements) and the memory
// it lives in. Every operator argument is one of these.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "mla/dtype.hpp"

namespace mla {

enum class MemorySpace : int { host = 0, device = 1 };
const char* memory_space_name(MemorySpace space);

inline constexpr int kMaxRank = 4;

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::bf16;
  int rank = 0;
  std::array<int64_t, kMaxRank> shape{};
  std::array<int64_t, kMaxRank> strides{};  // in elements, not bytes
  MemorySpace space = MemorySpace::host;

  // A dense row-major view.
  static TensorView contiguous(void* data, DType dtype, std::initializer_list<int64_t> shape,
                               MemorySpace space = MemorySpace::host);

  [[nodiscard]] bool empty() const { return data == nullptr && rank == 0; }
  [[nodiscard]] int64_t numel() const;
  [[nodiscard]] bool is_contiguous() const;
  [[nodiscard]] std::string shape_string() const;  // "[4, 16]"
  [[nodiscard]] std::string describe() const;      // "int32 [4, 16]"
  template <typename T>
  [[nodiscard]] T* as() const { return static_cast<T*>(data); }
};

}  // namespace mla
