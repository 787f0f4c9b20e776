#define TILE_MATH_NS portable
#include "tile_math.inc"

#include "mla/half.hpp"

namespace mla::sim_tpu {

const TileMath& tile_math_portable() { return portable::table(); }

bool cpu_has_avx512() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

const TileMath& tile_math_for_this_cpu() {
  static const TileMath& math = cpu_has_avx512() ? tile_math_avx512() : tile_math_portable();
  return math;
}

void convert_to_f32(const void* src, DType dtype, int64_t n, float* dst) {
  switch (dtype) {
    case DType::bf16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(s[i]);
      break;
    }
    case DType::fp16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_float(s[i]);
      break;
    }
    default: {
      const float* s = static_cast<const float*>(src);
      std::copy(s, s + n, dst);
      break;
    }
  }
}

}  // namespace mla::sim_tpu
