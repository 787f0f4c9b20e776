// Host entry points of the narrow Hopper kernel (keys on the wgmma M dimension; the 8-bit caches
// fp8_e4m3, int8 and fp8_ds_mla; at most 32 query rows per sequence: narrow_config.cuh). Its
// shape (warpgroups per CTA, query rows per CTA) follows from the query rows per sequence,
// s_q x h_q (`rows` below). It runs on the Hopper kernel's device-side schedule (one CTA per
// piece) and the shared combine.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "../portable/portable_launch.hpp"

namespace mla::cuda::hopper_narrow {

// Whether the kernel passed the GPU checks of scripts/gpu_check.sh; the plan selects it only then.
bool verified();
int max_rows();                // 32: s_q x h_q per sequence
int columns(int rows);         // wgmma N: 16 or 32
int warpgroups(int rows);      // 1 or 2 (thread 0 also issues the page copies)
int threads_per_cta(int rows);
// Whether it reads caches the way `read` names (the three 8-bit formats).
bool reads(portable::KvRead read);
size_t smem_bytes(int rows, portable::KvRead read);  // a stage is one page: 576 or 656 bytes per token
// Raises the kernel's dynamic shared-memory limit; returns the resident CTAs per SM (0: none fit).
int prepare(int rows, portable::KvRead read);

// Launches the persistent kernel on `grid` CTAs (= the schedule's pieces). params.kv_read is
// fp8_per_tensor, int8_per_channel or fp8_ds_mla; page size 64, h_kv 1, s_q x h_q <= 32, kv strides multiples
// of 16 bytes and data 16-byte aligned (checked; Error(unsupported) otherwise).
void launch_decode(portable::Elem elem, int grid, const portable::DecodeParams& params, int64_t kv_blocks,
                   const portable::ScheduleLayout& layout, cudaStream_t stream);

}  // namespace mla::cuda::hopper_narrow
