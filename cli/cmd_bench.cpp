// `mla bench`: warm-up, repeated runs, median time, GB/s and FLOP/s with the ANCHORS.md
// conventions. Simulated backends report their modelled latency; others wall time around a
// synchronised run.
#include <algorithm>
#include <chrono>
#include <iostream>

#include "anchors.hpp"
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
  bool anchors = false;
  std::string json;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct BenchRow {
  std::string kernel, backend, problem;
  double mean_seqlen = 0, seconds = 0, wall_median = 0, wall_min = 0, bytes = 0, flops = 0;
  bool simulated = false;
  nlohmann::json report;
  [[nodiscard]] double gbps() const { return bytes / seconds / 1e9; }
  [[nodiscard]] double tflops() const { return flops / seconds / 1e12; }
};

BenchRow bench_case(Device& device, const ShapeOptions& shape, int warmup, int iters) {
  Problem base = shape.problem();
  validate_problem(base);
  HostInputs in = make_random_inputs(base, shape.spec());
  auto plan = device.plan(in.problem);
  DeviceTensors tensors(device, in);
  auto schedule = plan->schedule(tensors.args().cache_seqlens);
  std::vector<double> wall, modelled;
  RunResult last;
  for (int k = 0; k < warmup + iters; ++k) {
    auto start = std::chrono::steady_clock::now();
    last = plan->run(tensors.args(), *schedule);
    device.synchronize();
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (k < warmup) continue;
    wall.push_back(t);
    if (last.seconds >= 0) modelled.push_back(last.seconds);
  }
  BenchRow row;
  row.backend = last.backend;
  row.kernel = last.kernel;
  row.problem = in.problem.describe();
  row.mean_seqlen = in.mean_seqlen();
  row.simulated = last.simulated && !modelled.empty();
  row.wall_median = median(wall);
  row.wall_min = *std::min_element(wall.begin(), wall.end());
  row.seconds = row.simulated ? median(modelled) : row.wall_median;
  row.bytes = anchor_bytes(in.problem, in.mean_seqlen());
  row.flops = anchor_flops(in.problem, in.mean_seqlen());
  row.report = parse_report(last);
  return row;
}

nlohmann::json row_json(const BenchRow& r) {
  return {{"backend", r.backend},       {"kernel", r.kernel},      {"problem", r.problem},
          {"mean_seqlen", r.mean_seqlen}, {"simulated", r.simulated}, {"seconds", r.seconds},
          {"wall_seconds_median", r.wall_median}, {"bytes", r.bytes}, {"flops", r.flops},
          {"gb_per_s", r.gbps()},       {"tflop_per_s", r.tflops()}, {"report", r.report}};
}

// Device-to-device copy bandwidth (bytes read + written), the memory ceiling of this run.
double copy_ceiling_gbps(Device& device) {
  const size_t bytes = size_t{1} << 30;
  void* a = device.allocate(bytes);
  void* b = device.allocate(bytes);
  std::vector<double> t;
  try {
    for (int k = 0; k < 8; ++k) {
      device.synchronize();
      auto start = std::chrono::steady_clock::now();
      device.copy(b, a, bytes, CopyKind::device_to_device);
      device.synchronize();
      if (k >= 2) t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
  } catch (...) {
    device.deallocate(a);
    device.deallocate(b);
    throw;
  }
  device.deallocate(a);
  device.deallocate(b);
  return 2.0 * static_cast<double>(bytes) / median(t) / 1e9;
}

void bench_one(const BenchOptions& o) {
  auto device = open_from(o.config);
  BenchRow r = bench_case(*device, o.shape, o.warmup, o.iters);
  std::cout << "backend " << r.backend << ", kernel " << r.kernel << "\n"
            << "problem " << r.problem << ", mean length " << format_number(r.mean_seqlen, 1) << "\n"
            << "| time (us) | GB/s | TFLOP/s | GFLOP/s | " << (r.simulated ? "simulator wall (us) |" : "min (us) |") << "\n"
            << "| " << format_number(r.seconds * 1e6, 1) << " | " << format_number(r.gbps(), 1) << " | "
            << format_number(r.tflops(), 3) << " | " << format_number(r.flops / r.seconds / 1e9, 1) << " | "
            << format_number((r.simulated ? r.wall_median : r.wall_min) * 1e6, 1) << " |\n";
  if (r.simulated) std::cout << "(time is the simulated latency of the modelled device)\n";
  if (!o.json.empty()) {
    nlohmann::json j = row_json(r);
    j["device"] = device->name();
    j["iterations"] = o.iters;
    write_json_file(o.json, j);
  }
}

// The ANCHORS.md table: every case, its ratio to FlashMLA's time, and the copy ceiling.
void bench_anchors(const BenchOptions& o) {
  auto device = open_from(o.config);
  const double copy_gbps = copy_ceiling_gbps(*device);
  std::cout << "device " << device->name() << "; copy ceiling measured now: " << format_number(copy_gbps, 0)
            << " GB/s (read + written)\n"
            << "| case | b | s_q | h_q | len | us | GB/s | TFLOP/s | FlashMLA us | vs FlashMLA | of copy ceiling | kernel |\n";
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& a : kAnchorCases) {
    ShapeOptions s = o.shape;
    s.batch = a.batch;
    s.s_q = a.s_q;
    s.heads = a.heads;
    s.kv_heads = 1;
    s.seqlen = a.seqlen;
    s.varlen = a.varlen;
    s.causal = a.causal;
    s.page_size = 64;
    s.dtype = "bf16";
    s.variant = "latent";
    BenchRow r = bench_case(*device, s, o.warmup, o.iters);
    const double vs = a.flashmla_us / (r.seconds * 1e6);
    std::cout << "| " << a.label << " | " << a.batch << " | " << a.s_q << " | " << a.heads << " | "
              << (a.varlen ? "~" : "") << a.seqlen << " | " << format_number(r.seconds * 1e6, 1) << " | "
              << format_number(r.gbps(), 0) << " | " << format_number(r.tflops(), 1) << " | " << a.flashmla_us << " | "
              << format_number(vs, 2) << "x | " << format_number(r.gbps() / copy_gbps, 2) << " | " << r.kernel << " |"
              << std::endl;
    nlohmann::json j = row_json(r);
    j["label"] = a.label;
    j["flashmla_us"] = a.flashmla_us;
    j["speed_vs_flashmla"] = vs;
    j["fraction_of_copy_ceiling"] = r.gbps() / copy_gbps;
    rows.push_back(j);
  }
  std::cout << "(vs FlashMLA > 1 means faster than FlashMLA's ANCHORS.md time on the H100; the matmul ceiling is "
               "measured by backends/cuda/tools/mla_cuda_bench)\n";
  if (!o.json.empty()) write_json_file(o.json, {{"device", device->name()}, {"copy_ceiling_gbps", copy_gbps}, {"rows", rows}});
}

}  // namespace

void add_bench_command(CLI::App& app) {
  static BenchOptions o;
  auto* cmd = app.add_subcommand("bench", "Benchmark one shape: median time, GB/s, FLOP/s (ANCHORS.md conventions)");
  o.config.add_to(*cmd, true);
  o.shape.add_to(*cmd);
  cmd->add_option("--warmup", o.warmup, "Runs before timing")->check(CLI::Range(0, 10000));
  cmd->add_option("--iters", o.iters, "Timed runs")->check(CLI::Range(1, 100000));
  cmd->add_flag("--anchors", o.anchors, "Run every case of the ANCHORS.md table (shape flags ignored) with ratios to FlashMLA");
  cmd->add_option("--json", o.json, "Write the result as JSON to this file");
  cmd->callback([] { o.anchors ? bench_anchors(o) : bench_one(o); });
}

}  // namespace mla::cli
