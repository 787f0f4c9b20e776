// Instantiations and launchers of the portable decode kernel: 3 tile shapes x 2 dtypes.
#include "../cuda_check.hpp"
#include "decode_kernel.cuh"

namespace mla::cuda::portable {
namespace {

template <typename Traits, typename T>
const void* kernel_ptr() {
  return reinterpret_cast<const void*>(&decode_kernel<Traits, T>);
}

// Calls BODY with Traits and T bound to the tile shape and element type.
#define MLA_DISPATCH_DECODE(shape, elem, ...)                                    \
  do {                                                                           \
    if ((shape) == TileShape::m16) {                                             \
      using Traits = TraitsM16;                                                  \
      if ((elem) == Elem::bf16) { using T = __nv_bfloat16; __VA_ARGS__; } else { using T = __half; __VA_ARGS__; } \
    } else if ((shape) == TileShape::m32) {                                      \
      using Traits = TraitsM32;                                                  \
      if ((elem) == Elem::bf16) { using T = __nv_bfloat16; __VA_ARGS__; } else { using T = __half; __VA_ARGS__; } \
    } else {                                                                     \
      using Traits = TraitsM64;                                                  \
      if ((elem) == Elem::bf16) { using T = __nv_bfloat16; __VA_ARGS__; } else { using T = __half; __VA_ARGS__; } \
    }                                                                            \
  } while (0)

}  // namespace

int tile_rows(TileShape shape) {
  return shape == TileShape::m16 ? TraitsM16::kM : shape == TileShape::m32 ? TraitsM32::kM : TraitsM64::kM;
}
int tile_threads(TileShape shape) {
  return shape == TileShape::m16 ? TraitsM16::kThreads
                                 : shape == TileShape::m32 ? TraitsM32::kThreads : TraitsM64::kThreads;
}
size_t decode_smem_bytes(TileShape shape, int stages, bool staged) {
  return shape == TileShape::m16   ? TraitsM16::smem_bytes(stages, staged)
         : shape == TileShape::m32 ? TraitsM32::smem_bytes(stages, staged)
                                   : TraitsM64::smem_bytes(stages, staged);
}

void prepare_decode(TileShape shape, Elem elem, int stages, bool staged) {
  const int bytes = static_cast<int>(decode_smem_bytes(shape, stages, staged));
  MLA_DISPATCH_DECODE(shape, elem,
                      check(cudaFuncSetAttribute(kernel_ptr<Traits, T>(),
                                                 cudaFuncAttributeMaxDynamicSharedMemorySize, bytes),
                            "cudaFuncSetAttribute(decode_kernel shared memory)"));
}

int decode_occupancy(TileShape shape, Elem elem, int stages, bool staged) {
  const size_t bytes = decode_smem_bytes(shape, stages, staged);
  int blocks = 0;
  MLA_DISPATCH_DECODE(shape, elem,
                      check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel_ptr<Traits, T>(),
                                                                          Traits::kThreads, bytes),
                            "cudaOccupancyMaxActiveBlocksPerMultiprocessor(decode_kernel)"));
  return blocks;
}

void launch_decode(TileShape shape, Elem elem, int stages, int grid, const DecodeParams& params,
                   const ScheduleLayout& layout, cudaStream_t stream) {
  const size_t bytes = decode_smem_bytes(shape, stages, params.kv_read != KvRead::plain);
  MLA_DISPATCH_DECODE(shape, elem, {
    decode_kernel<Traits, T><<<grid, Traits::kThreads, bytes, stream>>>(params, layout, stages);
    check_launch("decode_kernel launch");
  });
}

}  // namespace mla::cuda::portable
