// The stream-ordered memory of the context-parallel merge: a cudaMemPool_t the library owns, one
// per opened cuda device, that keeps what it reserved (release threshold UINT64_MAX), so after
// the first merges an allocation costs no cudaMalloc and no driver call that could synchronise.
// Allocations are cudaMallocFromPoolAsync / cudaFreeAsync on the merge's stream: the merge stays
// stream-ordered and capturable in a CUDA graph (where they become the graph's memory nodes).
// The device's default pool, which the user's cudaMallocAsync draws from, is left alone.
#pragma once

#include <cstddef>
#include <mutex>

#include <cuda_runtime.h>

namespace mla::cuda {

class MergePool {
 public:
  explicit MergePool(int device) : device_(device) {}
  ~MergePool();
  MergePool(const MergePool&) = delete;
  MergePool& operator=(const MergePool&) = delete;

  // Ordered on `stream`; throws Error(out_of_memory / device_error). The pool is created on the
  // first call (also while `stream` is capturing).
  void* allocate(size_t bytes, cudaStream_t stream);
  // cudaFreeAsync on `stream`; its status, for the caller to check (or ignore while unwinding).
  cudaError_t release(void* ptr, cudaStream_t stream) noexcept;

 private:
  cudaMemPool_t pool();

  int device_;
  std::mutex mutex_;
  cudaMemPool_t pool_ = nullptr;
};

}  // namespace mla::cuda
