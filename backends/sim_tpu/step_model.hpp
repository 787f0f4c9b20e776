// One decode step end to end on the model: partition, lower each chip, simulate, and (for
// partition = auto) keep the fastest strategy. Depends only on the lengths, so schedule() runs it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mla/context_parallel.hpp"
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

// The context-parallel terms of a step (SimConfig topology.context_parallel, ranks > 1).
struct ContextParallelStep {
  int64_t ranks = 1;
  ContextExchange exchange = ContextExchange::all_gather;  // the config's context_parallel.exchange
  double shard_ns = 0;        // the step of the largest shard (what `work` and `chips` describe)
  double exchange_ns = 0;     // the ring collectives: one all-gather, or two all-reduces
  double merge_ns = 0;        // the merge of the partials on the vector units (all_reduce: the
                              // rescale before the sum and the division after it)
  int64_t bytes_per_rank = 0; // what one rank puts in: all_gather, its partial (out in the query
                              // dtype + fp32 LSE); all_reduce, fp32 [out x w | w] + its LSE
};

struct StepModel {
  StepWork work;
  std::vector<SimulatedChip> chips;
  double latency_ns = 0;
  std::vector<CandidateResult> candidates;  // every strategy considered, in order
  std::string why;                          // one line: how the strategy was chosen
  ContextParallelStep context_parallel;     // ranks = 1 unless the topology asks for more
};

// `fits`: one per strategy considered (from fit_strategy); at least one must fit.
StepModel model_step(const Problem& problem, const SimConfig& config, const std::vector<StrategyFit>& fits,
                     const int32_t* seqlens);

// The step with context parallelism over config.topology.context_parallel.ranks copies of the
// topology: model_step on the largest shard's lengths (each sequence's pages split in rank
// order, as context_shard does), plus the exchange of the partials over the link and their
// merge, in the form `exchange` names. latency_ns is the sum; `work` and `chips` describe the
// shard's step.
StepModel model_context_parallel_step(const Problem& problem, const SimConfig& config,
                                      const std::vector<StrategyFit>& fits, const int32_t* seqlens,
                                      ContextExchange exchange);

}  // namespace mla::sim_tpu
