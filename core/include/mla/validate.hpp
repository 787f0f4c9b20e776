// The contract checks of DESIGN 2. Each throws Error(invalid_argument) naming the field, what
// was expected and what was given. Device::plan and Plan::run call them; backends need not.
#pragma once

#include <cstdint>

#include "mla/problem.hpp"
#include "mla/tensor.hpp"

namespace mla {

void validate_problem(const Problem& problem);

// A byte-packed cache with in-token float32 scales (fp8_ds_mla) must keep them 4-byte aligned.
void check_packed_token_alignment(const char* name, const TensorView& kv_cache, KvFormat format);
// The kv_scale operand of `format`: fp32 [1] / [d_c + d_r] in `space`, or empty.
void check_kv_scale(const TensorView& kv_scale, KvFormat format, int64_t d_c, int64_t d_r, MemorySpace space);

// Shapes, dtypes, strides, memory space, null and misaligned pointers of every tensor.
void validate_args(const Problem& problem, const RunArgs& args, MemorySpace space);

// out and lse of `problem` in `space` (what merges and checks of results read).
void validate_outputs(const Problem& problem, const TensorView& out, const TensorView& lse, MemorySpace space);

// cache_seqlens tensor: int32 [b] in `space`.
void validate_seqlens_tensor(const Problem& problem, const TensorView& seqlens, MemorySpace space);

// Reads host copies: lengths in [0, capacity], s_q <= length when causal... (see .cpp), and
// every block id that a valid token uses within [0, num_blocks).
void validate_indices(const Problem& problem, const int32_t* cache_seqlens, const int32_t* block_table,
                      int64_t block_table_row_stride);
void validate_seqlens(const Problem& problem, const int32_t* cache_seqlens);

}  // namespace mla
