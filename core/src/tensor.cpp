#include "mla/tensor.hpp"

#include <sstream>

namespace mla {

const char* memory_space_name(MemorySpace space) { return space == MemorySpace::host ? "host" : "device"; }

TensorView TensorView::contiguous(void* data, DType dtype, std::initializer_list<int64_t> shape, MemorySpace space) {
  TensorView v;
  v.data = data;
  v.dtype = dtype;
  v.space = space;
  v.rank = static_cast<int>(shape.size());
  int i = 0;
  for (int64_t extent : shape) v.shape[i++] = extent;
  int64_t stride = 1;
  for (int d = v.rank - 1; d >= 0; --d) {
    v.strides[d] = stride;
    stride *= v.shape[d];
  }
  return v;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int d = 0; d < rank; ++d) n *= shape[d];
  return n;
}

bool TensorView::is_contiguous() const {
  int64_t stride = 1;
  for (int d = rank - 1; d >= 0; --d) {
    if (shape[d] != 1 && strides[d] != stride) return false;
    stride *= shape[d];
  }
  return true;
}

std::string TensorView::shape_string() const {
  std::ostringstream os;
  os << '[';
  for (int d = 0; d < rank; ++d) os << (d ? ", " : "") << shape[d];
  os << ']';
  return os.str();
}

std::string TensorView::describe() const { return std::string(dtype_name(dtype)) + " " + shape_string(); }

}  // namespace mla
