// What a run tells its caller: totals of the simulated step (engine busy time, bytes per memory
// level, FLOPs) and the report JSON whose "summary" lines the CLI prints.
#pragma once

#include <array>
#include <string>

#include "mla/problem.hpp"
#include "program.hpp"
#include "sim_config.hpp"
#include "step_model.hpp"

namespace mla::sim_tpu {

struct StepTotals {
  std::array<double, kMemoryKinds> bytes_read{};     // by MemoryKind, over every chip
  std::array<double, kMemoryKinds> bytes_written{};
  std::array<double, 3> busy_ns{};                   // by EngineKind, summed over engine instances
  std::array<double, 3> instances{};                 // engine instances of each kind
  double flops = 0;                                  // useful matrix FLOPs
  double dequant_ns = 0;                             // BDC time in dequant_tile commands, summed over cores
  int64_t chips_busy = 0;
  int64_t commands = 0;                              // over the simulated chips
};
StepTotals step_totals(const StepModel& model);

// A JSON object: machine-readable fields and a "summary" array of lines.
std::string make_report(const Problem& problem, const SimConfig& config, const StepModel& model, bool timing_only);

std::string kernel_label(const Problem& problem, const std::string& partition, bool double_buffer);

}  // namespace mla::sim_tpu
