// Lowering: one chip's work (partition.hpp) becomes command streams on its engines
// (program.hpp). This is where the schedule of the chip lives: which engine moves what,
// what waits for what, and how double buffering changes the waits.
#pragma once

#include <cstdint>

#include "mla/problem.hpp"
#include "program.hpp"
#include "sim_config.hpp"
#include "work.hpp"

namespace mla::sim_tpu {

// Constants of the BDC cost model, named so the docs can cite them.
inline constexpr double kVectorOpsPerScore = 6;   // scale, mask, max, subtract, exp, sum
inline constexpr double kVectorOpsPerAccum = 1;   // rescale of the accumulator per tile and row
inline constexpr double kVectorOpsPerMerge = 2;   // per output element of a partial merged

ChipProgram lower_chip(const Problem& problem, const SimConfig& config, const StepWork& step, const ChipWork& chip);

}  // namespace mla::sim_tpu
