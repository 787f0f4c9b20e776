#include "trace_writer.hpp"

#include <cstdio>

#include "mla/output_file.hpp"

namespace mla::sim_tpu {

// Through the library's output-file rules: a link or /dev/stdout is written through, a regular
// file is replaced only once the trace is complete.
void write_trace(const std::string& path, const StepModel& model) {
  write_output_file(path, [&](std::ostream& out) { write_trace(out, model); });
}

void write_trace(std::ostream& out, const StepModel& model) {
  out << "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n";
  bool first = true;
  char buf[512];
  auto line = [&](const char* text) {
    out << (first ? "" : ",\n") << text;
    first = false;
  };
  for (size_t ci = 0; ci < model.chips.size(); ++ci) {
    const SimulatedChip& sim = model.chips[ci];
    const ChipWork& work = model.work.chips[sim.work_index];
    const int pid = static_cast<int>(ci) + 1;
    std::snprintf(buf, sizeof buf,
                  "{\"ph\":\"M\",\"pid\":%d,\"name\":\"process_name\",\"args\":{\"name\":\"card %d chip %d (heads %d-%d, "
                  "%d sequences; stands for %lld chips)\"}}",
                  pid, work.card, work.chip, work.head_begin, work.head_begin + work.head_count - 1,
                  static_cast<int>(work.sequences.size()), static_cast<long long>(sim.copies));
    line(buf);
    std::snprintf(buf, sizeof buf, "{\"ph\":\"M\",\"pid\":%d,\"name\":\"process_sort_index\",\"args\":{\"sort_index\":%d}}", pid, pid);
    line(buf);
    for (size_t lane = 0; lane < sim.program.lanes.size(); ++lane) {
      std::snprintf(buf, sizeof buf, "{\"ph\":\"M\",\"pid\":%d,\"tid\":%zu,\"name\":\"thread_name\",\"args\":{\"name\":\"%s\"}}",
                    pid, lane, sim.program.lanes[lane].name().c_str());
      line(buf);
      std::snprintf(buf, sizeof buf, "{\"ph\":\"M\",\"pid\":%d,\"tid\":%zu,\"name\":\"thread_sort_index\",\"args\":{\"sort_index\":%zu}}",
                    pid, lane, lane);
      line(buf);
    }
    for (size_t i = 0; i < sim.program.commands.size(); ++i) {
      const Command& c = sim.program.commands[i];
      const double start = sim.timeline.start_ns[i], end = sim.timeline.end_ns[i];
      std::snprintf(buf, sizeof buf,
                    "{\"ph\":\"X\",\"pid\":%d,\"tid\":%d,\"name\":\"%s\",\"cat\":\"%s\",\"ts\":%.4f,\"dur\":%.4f,"
                    "\"args\":{\"seq\":%d,\"bytes\":%.0f,\"flops\":%.0f,\"from\":\"%s\",\"to\":\"%s\"}}",
                    pid, c.lane, op_name(c.op), engine_name(sim.program.lanes[static_cast<size_t>(c.lane)].kind),
                    start * 1e-3, (end - start) * 1e-3, c.seq, c.bytes, c.flops, memory_name(c.src), memory_name(c.dst));
      line(buf);
    }
  }
  out << "\n]}\n";
}

}  // namespace mla::sim_tpu
