// The GPU kernels of context parallelism (docs/context-parallel.md), one set per exchange form,
// all following mla/context_merge_rules.hpp. Rank-order sums, so every rank writes the same
// bits. out [batch, s_q, h_q, width] and lse [batch, h_q, s_q] are contiguous.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "../portable/portable_launch.hpp"
#include "mla/context_merge_rules.hpp"

namespace mla::cuda {

struct MergeRows {
  int64_t batch = 1, s_q = 1, h_q = 1;
  int width = 512;  // out's last dimension
  [[nodiscard]] MLA_MERGE_RULE int64_t count() const { return batch * s_q * h_q; }
};

// All-gather form: rank k's partial is the slot at gathered + k * slot_bytes, its out (16-bit
// type) at the slot's start and its lse (fp32) at lse_offset.
struct GatheredMergeParams {
  MergeRows rows;
  int ranks = 1;
  const unsigned char* gathered = nullptr;
  size_t slot_bytes = 0, lse_offset = 0;
  void* out = nullptr;
  float* lse = nullptr;
};
void launch_gathered_merge(portable::Elem elem, const GatheredMergeParams& params, cudaStream_t stream);

// All-reduce form, in three steps around the two all-reduces:
//   keys[j] = max_key(lse[j])                      (then max all-reduce of keys: the row max)
//   sums = [scaled(w, out) rows x width | w rows]  (then sum all-reduce of sums)
//   out = sums / w, lse = merged_lse(keys, w)
// keys and the weights are in lse's order, the scaled outs in out's.
struct ReducedMergeParams {
  MergeRows rows;
  float* keys = nullptr;  // rows floats
  float* sums = nullptr;  // rows * (width + 1) floats
  void* out = nullptr;
  float* lse = nullptr;
};
void launch_max_keys(const ReducedMergeParams& params, cudaStream_t stream);
void launch_scale_partials(portable::Elem elem, const ReducedMergeParams& params, cudaStream_t stream);
void launch_finish_reduced(portable::Elem elem, const ReducedMergeParams& params, cudaStream_t stream);

// All launchers throw mla::Error(device_error) when the launch fails.

}  // namespace mla::cuda
