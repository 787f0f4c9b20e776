// The GPU half of context parallelism (docs/context-parallel.md): every rank's partial out and
// lse, gathered side by side in one buffer, merged into this rank's out and lse. Rank-order
// sums, so every rank writes the same bits.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "../portable/portable_launch.hpp"

namespace mla::cuda {

struct ContextMergeParams {
  int ranks = 1;
  int64_t batch = 1, s_q = 1, h_q = 1;
  int width = 512;                // out's last dimension
  const void* gathered_out = nullptr;  // [ranks][batch, s_q, h_q, width] of the 16-bit type
  const float* gathered_lse = nullptr; // [ranks][batch, h_q, s_q]
  void* out = nullptr;            // [batch, s_q, h_q, width], contiguous
  float* lse = nullptr;           // [batch, h_q, s_q], contiguous
};

// Throws mla::Error(device_error) when the launch fails.
void launch_context_merge(portable::Elem elem, const ContextMergeParams& params, cudaStream_t stream);

}  // namespace mla::cuda
