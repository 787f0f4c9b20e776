// The event-driven timing model. Each lane runs its commands in order; a command starts when
// its lane is free and its dependencies have finished. BDC commands take their fixed time. A DMA
// command first pays its fixed overhead (descriptors, latency), then streams its bytes at a rate
// that is re-shared whenever a transfer starts or ends: transfers through DDR share the DDR
// bandwidth, those through L2 share L2's, each capped by its own engine's bandwidth (max-min
// fair sharing). Cost: O(commands * (log commands + concurrent transfers)).
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
