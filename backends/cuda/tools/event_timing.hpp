// Median time of a piece of GPU work for the cuda tools: `warmup` untimed calls, then `iters`
// calls each between two CUDA events on `stream`; Error(device_error) if any CUDA call of the
// calling thread failed on the way.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <string>
#include <vector>

#include "mla/error.hpp"

namespace mla::cuda_tools {

template <typename Fn>
double median_us(Fn&& fn, cudaStream_t stream, int warmup, int iters) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<float> ms;
  for (int i = 0; i < iters; ++i) {
    cudaEventRecord(a, stream);
    fn();
    cudaEventRecord(b, stream);
    cudaEventSynchronize(b);
    float t = 0;
    cudaEventElapsedTime(&t, a, b);
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaError_t st = cudaGetLastError();
  if (st != cudaSuccess) fail(ErrorCode::device_error, std::string("bench: ") + cudaGetErrorString(st));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2] * 1e3;
}

}  // namespace mla::cuda_tools
