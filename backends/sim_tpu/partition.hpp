// Work partition and tiling: which card / chip / core computes which heads and keys, the tile
// sizes that fit LMEM and L2, and the capacity errors when nothing fits.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "mla/problem.hpp"
#include "sim_config.hpp"
#include "work.hpp"

namespace mla::sim_tpu {

// Shape-only facts of one strategy: the tiling it would use, or why it cannot run.
struct StrategyFit {
  Strategy strategy = Strategy::heads;
  std::optional<Tiling> tiling;  // empty when it does not fit
  std::string refusal;           // why not, with the byte counts
};

// Heads [begin, begin + count) of tensor-parallel rank `rank`.
struct HeadRange {
  int64_t begin = 0, count = 0;
};
HeadRange heads_of_rank(const Problem& problem, const Topology& topology, int64_t rank);

// Picks kv_tile_tokens / l2_chunk_tokens (or checks the configured ones) against LMEM and L2.
StrategyFit fit_strategy(const Problem& problem, const SimConfig& config, Strategy strategy);

// Splits one step's work. `fit.tiling` must be set.
StepWork partition(const Problem& problem, const SimConfig& config, const StrategyFit& fit, const int32_t* seqlens);

// LMEM bytes per core for a tiling (the breakdown behind fit_strategy's check).
int64_t lmem_bytes_needed(const Problem& problem, const SimConfig& config, Strategy strategy, int64_t tile_tokens,
                          bool double_buffer, bool weights_resident);

}  // namespace mla::sim_tpu
