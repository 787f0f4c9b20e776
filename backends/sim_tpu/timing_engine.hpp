// The event-driven timing model. Each lane runs its commands in order; a command starts when
// its lane is free and its dependencies have finished. BDC commands take their fixed time. A DMA
// command first pays its fixed overhead (descriptors, latency), then streams its bytes at a rate
// that is re-computed whenever a transfer starts or ends. DDR and L2 each have one bandwidth that
// all transfers through them share, and each transfer is capped by its own engine's bandwidth.
// The memories arbitrate oldest-first: transfers are served in program order (the order the
// lowering issued them), each taking what the older ones leave (docs/backends/sim_tpu.md,
// "Timing"). Cost: O(commands * (log commands + concurrent transfers)).
#pragma once

#include <vector>

#include "program.hpp"

namespace mla::sim_tpu {

struct Timeline {
  std::vector<double> start_ns, end_ns;  // per command
  std::vector<double> lane_busy_ns;      // per lane: sum of its commands' durations
  double makespan_ns = 0;
};

// Throws Error(internal) if the commands can never all run (a dependency cycle in the lowering).
Timeline simulate(const ChipProgram& program);

}  // namespace mla::sim_tpu
