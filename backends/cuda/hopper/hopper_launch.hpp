// Host entry points of the Hopper (sm_90a: TMA + wgmma) decode kernel. It shares the
// portable kernels' device-side scheduler (keys split in multiples of 64 = one KV block) and
// combine kernel, and their DecodeParams / ScheduleLayout.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "../portable/portable_launch.hpp"

namespace mla::cuda::hopper {

// Whether the kernel passed the GPU checks of scripts/gpu_check.sh (grid vs the CPU float64
// reference, compute-sanitizer, graph replay). The plan selects it only when this is true.
bool verified();

int rows_per_cta();      // 64
int block_keys();        // 64: split boundaries must be multiples of this
int threads_per_cta();   // 384 (2 math warpgroups + 1 producer warpgroup)
size_t smem_bytes();
// Raises the kernel's dynamic shared-memory limit; returns the resident CTAs per SM (0: none fit).
int prepare();

int max_batch();         // the contiguous scheduler's batch limit
// The contiguous, cost-balanced split-KV schedule in `pieces` pieces (hopper_scheduler.cu);
// the layout must hold at least batch + pieces + 1 entries. The kernel's grid is pieces x units.
void launch_scheduler(const int32_t* cache_seqlens, int32_t batch, int32_t capacity_tokens, int32_t pieces,
                      const portable::ScheduleLayout& layout, cudaStream_t stream);

// Launches the persistent kernel on `grid` = pieces x units CTAs. kv_blocks: kv_cache's first dimension.
// elem: q and out are bf16 or fp16; the cache holds elem too (params.kv_read = plain) or one of
// the 8-bit formats (params.kv_read, params.kv_scale). Requires page size 64, h_kv = 1, kv
// token and block strides multiples of 16 bytes, kv data 16-byte aligned (checked;
// Error(unsupported) otherwise).
void launch_decode(portable::Elem elem, int grid, const portable::DecodeParams& params, int64_t kv_blocks,
                   const portable::ScheduleLayout& layout, cudaStream_t stream);

}  // namespace mla::cuda::hopper
