#include "tensor_map.hpp"

#include <cudaTypedefs.h>

#include <mutex>
#include <string>

#include "../cuda_check.hpp"

namespace mla::cuda::hopper {
namespace {

PFN_cuTensorMapEncodeTiled_v12000 encode_fn() {
  static std::once_flag once;
  static PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
  static cudaError_t status = cudaSuccess;
  static cudaDriverEntryPointQueryResult query = cudaDriverEntryPointSuccess;
  std::call_once(once, [] {
    void* ptr = nullptr;
    status = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &ptr, 12000, cudaEnableDefault, &query);
    fn = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(ptr);
  });
  check(status, "cudaGetDriverEntryPointByVersion(cuTensorMapEncodeTiled)");
  if (query != cudaDriverEntryPointSuccess || !fn)
    fail(ErrorCode::device_error, "cuda: the driver has no cuTensorMapEncodeTiled (needed by the Hopper kernels)");
  return fn;
}

}  // namespace

CUtensorMap make_kv_map(const portable::DecodeParams& p, CUtensorMapDataType type, int elem_bytes, int token_width,
                        int64_t kv_blocks, int box_cols, CUtensorMapSwizzle swizzle, int l2_promotion) {
  CUtensorMap map;
  const cuuint64_t dims[3] = {static_cast<cuuint64_t>(token_width), static_cast<cuuint64_t>(p.page_size),
                              static_cast<cuuint64_t>(kv_blocks)};
  const cuuint64_t strides[2] = {static_cast<cuuint64_t>(p.kv_stride_token) * elem_bytes,
                                 static_cast<cuuint64_t>(p.kv_stride_block) * elem_bytes};
  const cuuint32_t box[3] = {static_cast<cuuint32_t>(box_cols), static_cast<cuuint32_t>(p.page_size), 1};
  const cuuint32_t elem_strides[3] = {1, 1, 1};
  const CUresult r = encode_fn()(&map, type, 3, const_cast<void*>(p.kv), dims, strides, box, elem_strides,
                                 CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle,
                                 l2_promotion == 0     ? CU_TENSOR_MAP_L2_PROMOTION_NONE
                                 : l2_promotion == 128 ? CU_TENSOR_MAP_L2_PROMOTION_L2_128B
                                                       : CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                 CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    fail(ErrorCode::device_error, "cuda: cuTensorMapEncodeTiled(kv_cache) failed with CUresult " + std::to_string(r));
  return map;
}

}  // namespace mla::cuda::hopper
