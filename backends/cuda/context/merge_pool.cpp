#include "merge_pool.hpp"

#include <cstdint>
#include <string>

#include "../cuda_check.hpp"

namespace mla::cuda {

MergePool::~MergePool() {
  // Memory still in use by queued work (or by a graph) is released when that is done.
  if (pool_) cudaMemPoolDestroy(pool_);
}

cudaMemPool_t MergePool::pool() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (pool_) return pool_;
  // Creating a pool is not a stream operation; a capture in global mode may forbid it on this
  // thread, so it runs in relaxed mode for the call, whatever this thread's capture is.
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  check(cudaThreadExchangeStreamCaptureMode(&mode), "cudaThreadExchangeStreamCaptureMode");
  cudaMemPoolProps props = {};
  props.allocType = cudaMemAllocationTypePinned;
  props.handleTypes = cudaMemHandleTypeNone;
  props.location.type = cudaMemLocationTypeDevice;
  props.location.id = device_;
  cudaMemPool_t pool = nullptr;
  cudaError_t status = cudaMemPoolCreate(&pool, &props);
  if (status == cudaSuccess) {
    uint64_t keep_everything = UINT64_MAX;
    status = cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_everything);
    if (status != cudaSuccess) cudaMemPoolDestroy(pool);
  }
  cudaThreadExchangeStreamCaptureMode(&mode);
  check(status, "cudaMemPoolCreate(context-parallel merge pool)");
  pool_ = pool;
  return pool_;
}

void* MergePool::allocate(size_t bytes, cudaStream_t stream) {
  cudaMemPool_t p = pool();
  void* ptr = nullptr;
  const cudaError_t status = cudaMallocFromPoolAsync(&ptr, bytes, p, stream);
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    fail(ErrorCode::out_of_memory,
         "cuda: merge_context_parallel: cudaMallocFromPoolAsync of " + std::to_string(bytes) + " bytes failed (out of memory)");
  }
  check(status, "cudaMallocFromPoolAsync(merge)");
  return ptr;
}

cudaError_t MergePool::release(void* ptr, cudaStream_t stream) noexcept {
  return ptr ? cudaFreeAsync(ptr, stream) : cudaSuccess;
}

}  // namespace mla::cuda
