// Host-side set-up shared by the sm_90a kernels (hopper/, hopper_narrow/): each instantiation's
// dynamic shared-memory limit raised, and how many of its CTAs fit on an SM.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "../cuda_check.hpp"

namespace mla::cuda::hopper {

// Raises every kernel's dynamic shared-memory limit to `smem_bytes` and returns the CTAs of
// `threads` threads resident per SM for the tightest of them (0: none fits). `name` labels errors.
inline int prepare_kernels(const std::vector<const void*>& kernels, int threads, size_t smem_bytes,
                           const std::string& name) {
  int blocks = 1 << 30;
  for (const void* fn : kernels) {
    check(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem_bytes)),
          ("cudaFuncSetAttribute(" + name + " shared memory)").c_str());
    int b = 0;
    check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, fn, threads, smem_bytes),
          ("cudaOccupancyMaxActiveBlocksPerMultiprocessor(" + name + ")").c_str());
    blocks = std::min(blocks, b);
  }
  return blocks;
}

}  // namespace mla::cuda::hopper
