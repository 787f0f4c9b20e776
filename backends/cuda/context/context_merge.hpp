// Device::merge_context_parallel on the cuda backend (docs/context-parallel.md): this rank's
// partial out / lse (device memory, contiguous, bf16 or fp16 out) exchanged through `comm` the
// `exchange` way and merged in place. Everything is ordered on `stream`, with no host
// synchronisation and no allocation outside `pool`, so the merge can be captured in a CUDA graph
// whenever the communicator's collectives can (NCCL's can).
#pragma once

#include <cuda_runtime.h>

#include "merge_pool.hpp"
#include "mla/context_parallel.hpp"

namespace mla::cuda {

void merge_context_parallel_cuda(const Problem& problem, const TensorView& out, const TensorView& lse, Communicator& comm,
                                 ContextExchange exchange, MergePool& pool, cudaStream_t stream);

}  // namespace mla::cuda
