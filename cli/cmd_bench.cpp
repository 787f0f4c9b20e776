// `mla bench`: warm-up, repeated runs, median time, GB/s and FLOP/s with the ANCHORS.md
// conventions. Simulated backends report their modelled latency; others wall time around a
// synchronised run.
#include <algorithm>
#include <chrono>
#include <iostream>

#include "commands.hpp"
#include "device_tensors.hpp"
#include "mla/metrics.hpp"
#include "mla/validate.hpp"
#include "options.hpp"
#include "report.hpp"

namespace mla::cli {

namespace {

struct BenchOptions {
  ConfigOptions config;
  ShapeOptions shape;
  int warmup = 3, iters = 20;
  std::string json;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void bench(const BenchOptions& o) {
  Problem base = o.shape.problem();
  validate_problem(base);
  auto device = open_from(o.config);
  HostInputs in = make_random_inputs(base, o.shape.spec());
  auto plan = device->plan(in.problem);
  DeviceTensors tensors(*device, in);
  auto schedule = plan->schedule(tensors.args().cache_seqlens);

  std::vector<double> wall, modelled;
  RunResult last;
  for (int k = 0; k < o.warmup + o.iters; ++k) {
    auto start = std::chrono::steady_clock::now();
    last = plan->run(tensors.args(), *schedule);
    device->synchronize();
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (k < o.warmup) continue;
    wall.push_back(t);
    if (last.seconds >= 0) modelled.push_back(last.seconds);
  }
  const bool simulated = last.simulated && !modelled.empty();
  const double time = simulated ? median(modelled) : median(wall);
  const double bytes = anchor_bytes(in.problem, in.mean_seqlen());
  const double flops = anchor_flops(in.problem, in.mean_seqlen());

  std::cout << "backend " << last.backend << ", kernel " << last.kernel << "\n"
            << "problem " << in.problem.describe() << ", mean length " << format_number(in.mean_seqlen(), 1) << "\n"
            << "| time (us) | GB/s | TFLOP/s | GFLOP/s | " << (simulated ? "simulator wall (us) |" : "min (us) |") << "\n"
            << "| " << format_number(time * 1e6, 1) << " | " << format_number(bytes / time / 1e9, 1) << " | "
            << format_number(flops / time / 1e12, 3) << " | " << format_number(flops / time / 1e9, 1) << " | "
            << format_number((simulated ? median(wall) : *std::min_element(wall.begin(), wall.end())) * 1e6, 1)
            << " |\n";
  if (simulated) std::cout << "(time is the simulated latency of the modelled device)\n";
  if (!o.json.empty()) {
    write_json_file(o.json, {{"backend", last.backend},
                             {"device", device->name()},
                             {"kernel", last.kernel},
                             {"problem", in.problem.describe()},
                             {"batch", in.problem.batch},
                             {"s_q", in.problem.s_q},
                             {"h_q", in.problem.h_q},
                             {"mean_seqlen", in.mean_seqlen()},
                             {"simulated", simulated},
                             {"seconds", time},
                             {"wall_seconds_median", median(wall)},
                             {"iterations", o.iters},
                             {"bytes", bytes},
                             {"flops", flops},
                             {"gb_per_s", bytes / time / 1e9},
                             {"tflop_per_s", flops / time / 1e12},
                             {"report", parse_report(last)}});
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  static BenchOptions o;
  auto* cmd = app.add_subcommand("bench", "Benchmark one shape: median time, GB/s, FLOP/s (ANCHORS.md conventions)");
  o.config.add_to(*cmd, true);
  o.shape.add_to(*cmd);
  cmd->add_option("--warmup", o.warmup, "Runs before timing")->check(CLI::Range(0, 10000));
  cmd->add_option("--iters", o.iters, "Timed runs")->check(CLI::Range(1, 100000));
  cmd->add_option("--json", o.json, "Write the result as JSON to this file");
  cmd->callback([] { bench(o); });
}

}  // namespace mla::cli
