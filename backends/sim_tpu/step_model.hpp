// One decode step end to end on the model: partition, lower each chip, simulate, and (for
// partition = auto) keep the fastest strategy. Depends only on the lengths, so schedule() runs it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mla/problem.hpp"
#include "partition.hpp"
#include "program.hpp"
#include "timing_engine.hpp"
#include "work.hpp"

namespace mla::sim_tpu {

// A chip that was simulated, standing for `copies` chips with the same program.
struct SimulatedChip {
  size_t work_index = 0;  // into StepModel::work.chips
  int64_t copies = 1;
  ChipProgram program;
  Timeline timeline;
};

struct CandidateResult {
  Strategy strategy = Strategy::heads;
  double latency_ns = -1;  // < 0 when it did not fit
  std::string refusal;
};

struct StepModel {
  StepWork work;
  std::vector<SimulatedChip> chips;
  double latency_ns = 0;
  std::vector<CandidateResult> candidates;  // every strategy considered, in order
  std::string why;                          // one line: how the strategy was chosen
};

// `fits`: one per strategy considered (from fit_strategy); at least one must fit.
StepModel model_step(const Problem& problem, const SimConfig& config, const std::vector<StrategyFit>& fits,
                     const int32_t* seqlens);

}  // namespace mla::sim_tpu
