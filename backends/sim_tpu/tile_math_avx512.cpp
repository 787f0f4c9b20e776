// The tile kernels compiled for AVX-512 + FMA; only called when the CPU reports both.
#define TILE_MATH_NS avx512
#include "tile_math.inc"

namespace mla::sim_tpu {
const TileMath& tile_math_avx512() { return avx512::table(); }
}  // namespace mla::sim_tpu
