// The fast path: split the step into tasks (sequence, KV head, head chunk, KV split), run
// them on oneTBB, merge split partials by their LSEs, apply the absorb projections.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cpu_config.hpp"
#include "mla/host_tensor.hpp"
#include "mla/problem.hpp"
#include "task_kernel.hpp"

namespace mla::cpu {

// How one step's keys are divided. Made by schedule() from cache_seqlens.
struct SplitPlan {
  std::vector<int32_t> seqlens;
  std::vector<int32_t> splits;          // per sequence, >= 1
  std::vector<int64_t> partial_index;   // per sequence: first partial slot, or -1 when unsplit
  int64_t partial_slots = 0;
  int64_t chunk_tokens = 0;             // keys per split
  int64_t heads_per_task = 0;
  [[nodiscard]] bool matches(const int32_t* lens) const;
  [[nodiscard]] std::string describe() const;
};

// Buffers of one schedule, grown on first use.
struct Workspace {
  std::vector<float> partial_out;  // [slot, h_q, s_q, d_v]
  std::vector<float> partial_lse;  // [slot, h_q, s_q]
  HostTensor q_latent;             // absorb: concat(q_nope @ w_uk, q_rope) [b, s_q, h_q, d_qk]
  std::vector<float> o_latent;     // absorb: [b, s_q, h_q, d_c]
};

// Query rows of a full task: heads of one KV group times query tokens, at most 128.
int64_t rows_per_task(const Problem& problem);
SplitPlan plan_splits(const Problem& problem, const int32_t* seqlens, const CpuConfig& config, int threads);
size_t fast_workspace_bytes(const Problem& problem, const CpuConfig& config, int threads);
void fast_decode(const Problem& problem, const RunArgs& args, const SplitPlan& split, Workspace& workspace,
                 const CpuConfig& config, int threads, TaskKernel kernel);

}  // namespace mla::cpu
