// The functional half of the simulator: computes the real outputs from the step's work items,
// each core's item tile by tile (kv_tile_tokens keys at a time, online softmax, fp32), split-KV
// partials merged by their LSEs in slice order, like the chip would. Reads only keys < length.
#pragma once

#include <vector>

#include "mla/problem.hpp"
#include "work.hpp"

namespace mla::sim_tpu {

// Split-KV partials of one step; owned by the schedule and reused by its runs.
struct PartialBuffers {
  std::vector<float> out;  // [slot, rows, d_v]
  std::vector<float> lse;  // [slot, rows]; -inf when the slice attended nothing
  int64_t rows_per_slot = 0;
};

// Items run in parallel (they are independent, as the cores are); each item in tile order.
void execute_step(const Problem& problem, const RunArgs& args, const StepWork& step, PartialBuffers& partials);

}  // namespace mla::sim_tpu
