// Chrome-trace JSON (the "traceEvents" format Perfetto and chrome://tracing open): one process
// per simulated chip, one thread per engine (SDMA, and GDMA / BDC of every core), one complete
// event per command with its bytes or FLOPs. Times in microseconds of simulated time.
#pragma once

#include <ostream>
#include <string>

#include "mla/problem.hpp"
#include "step_model.hpp"

namespace mla::sim_tpu {

// Throws Error(io_error) when the file cannot be written.
void write_trace(const std::string& path, const StepModel& model);
void write_trace(std::ostream& out, const StepModel& model);

}  // namespace mla::sim_tpu
