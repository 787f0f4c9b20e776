// `mla bench`: warm-up, repeated runs, median time, GB/s and FLOP/s (bytes and FLOPs counted
// as docs/results.md says). Simulated backends report their modelled latency; others wall time around a
// synchronised run.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <optional>

#include "anchor_choice.hpp"
#include "commands.hpp"
#include "device_tensors.hpp"
#include "mla/metrics.hpp"
#include "mla/registry.hpp"
#include "mla/validate.hpp"
#include "memory_budget.hpp"
#include "options.hpp"
#include "output_files.hpp"
#include "report.hpp"

namespace mla::cli {

namespace {

struct BenchOptions {
  ConfigOptions config;
  ShapeOptions shape;
  int warmup = 3, iters = 20;
  bool anchors = false;
  int anchor_case = -1;  // with --anchors: only this row of the table (0-based); -1: every row
  std::string anchor_gpu = "auto";  // with --anchors: whose FlashMLA figures (see anchor_choice.hpp)
  std::string json;
  MemoryOptions memory;
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

BenchRow bench_case(Device& device, const ShapeOptions& shape, int warmup, int iters, const MemoryOptions& memory) {
  Problem base = shape.problem();
  validate_problem(base);
  std::vector<int32_t> lens;
  const Problem sized = random_inputs_problem(base, shape.spec(), &lens);
  auto plan = device.plan(sized);
  const int64_t longest = lens.empty() ? 0 : *std::max_element(lens.begin(), lens.end());
  memory.check(decode_memory(sized, longest, plan.get(), false), "this benchmark");
  HostInputs in = make_random_inputs(base, shape.spec());
  DeviceTensors tensors(device, in);
  auto schedule = plan->schedule(tensors.args().cache_seqlens);
  std::vector<double> wall, modelled;
  RunResult last;
  auto timed = [&](int runs) {  // seconds per run over `runs` back-to-back runs, one sync at the end
    auto start = std::chrono::steady_clock::now();
    for (int r = 0; r < runs; ++r) last = plan->run(tensors.args(), *schedule);
    device.synchronize();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / runs;
  };
  // A sample is `batch` back-to-back runs with one synchronize, at least ~1 ms of work: for
  // kernels of tens of microseconds a per-run synchronize would time the host round trip
  // (launch + wake-up, ~10-20 us on a GPU) instead of the operator, which a serving loop never
  // waits for between layers. Host backends take one run per sample (each run is long).
  double first = 0;
  for (int k = 0; k < std::max(warmup, 1); ++k) first = timed(1);
  const int batch = std::clamp(static_cast<int>(1e-3 / std::max(first, 1e-9)), 1, 64);
  for (int k = 0; k < iters; ++k) {
    wall.push_back(timed(batch));
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

// One allocation in the device's memory, freed on every path.
class DeviceBuffer {
 public:
  DeviceBuffer(Device& device, size_t bytes) : device_(device), ptr_(device.allocate(bytes)) {}
  ~DeviceBuffer() { device_.deallocate(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  [[nodiscard]] void* get() const { return ptr_; }

 private:
  Device& device_;
  void* ptr_;
};

// Device-to-device copy bandwidth (bytes read + written), the memory ceiling of this run.
double copy_ceiling_gbps(Device& device) {
  const size_t bytes = size_t{1} << 30;
  DeviceBuffer a(device, bytes), b(device, bytes);
  std::vector<double> t;
  for (int k = 0; k < 8; ++k) {
    device.synchronize();
    auto start = std::chrono::steady_clock::now();
    device.copy(b.get(), a.get(), bytes, CopyKind::device_to_device);
    device.synchronize();
    if (k >= 2) t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return 2.0 * static_cast<double>(bytes) / median(t) / 1e9;
}

// `value` as a fraction of a ceiling of this run: JSON null and "-" when the device has none.
nlohmann::json fraction_json(double value, std::optional<double> ceiling) {
  return ceiling ? nlohmann::json(value / *ceiling) : nlohmann::json(nullptr);
}
std::string fraction_cell(double value, std::optional<double> ceiling) {
  return ceiling ? format_number(value / *ceiling, 2) : "-";
}

void bench_one(const BenchOptions& o, OutputFiles& files) {
  auto device = open_from(o.config);
  BenchRow r = bench_case(*device, o.shape, o.warmup, o.iters, o.memory);
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
    files.write("--json", json_body(j));
  }
}

// The FlashMLA table of this GPU (or of --anchor-gpu): every case (or row --anchor-case), its
// ratio to FlashMLA's time, and its share of the copy and matmul ceilings, both measured on
// this device in this run.
void bench_anchors(const BenchOptions& o, OutputFiles& files) {
  auto device = open_from(o.config);
  const AnchorChoice choice = choose_anchor_table(o.anchor_gpu, device->hardware_name(), device->name());
  const AnchorTable& table = *choice.table;
  if (o.anchor_case >= 0) check_anchor_case(table, o.anchor_case);
  // A simulator's times are its modelled device's, so a copy on the host running it is no
  // ceiling for them: a simulated device has none here (its bandwidths are in its config).
  const std::vector<std::string> simulators = simulated_backends();
  const bool simulated =
      std::find(simulators.begin(), simulators.end(), device->backend_name()) != simulators.end();
  const std::optional<double> copy_gbps =
      simulated ? std::nullopt : std::optional<double>(copy_ceiling_gbps(*device));
  const std::optional<double> matmul_tflops = device->measure_matmul_tflops();
  std::cout << "device " << device->name() << "; ceilings measured now: copy "
            << (copy_gbps ? format_number(*copy_gbps, 0) + " GB/s (read + written)"
                          : std::string("none (a simulated device: its modelled bandwidths are in its config)"))
            << ", bf16 matmul "
            << (matmul_tflops ? format_number(*matmul_tflops, 0) + " TFLOP/s"
                              : std::string("none (this device cannot measure one)"))
            << "\n"
            << "anchor table " << table.key << ": FlashMLA on the " << table.gpu << " (" << table.measured
            << "; ceilings there: copy " << table.copy_gbps << " GB/s, bf16 matmul " << table.matmul_tflops
            << " TFLOP/s), because " << choice.why << "\n"
            << "| case | b | s_q | h_q | len | us | GB/s | TFLOP/s | FlashMLA " << table.gpu
            << " us | vs FlashMLA | of copy ceiling | of matmul ceiling | kernel |\n";
  nlohmann::json rows = nlohmann::json::array();
  for (int index = 0; index < static_cast<int>(table.cases.size()); ++index) {
    if (o.anchor_case >= 0 && index != o.anchor_case) continue;
    const AnchorCase& a = table.cases[static_cast<size_t>(index)];
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
    BenchRow r = bench_case(*device, s, o.warmup, o.iters, o.memory);
    const double vs = a.flashmla_us / (r.seconds * 1e6);
    std::cout << "| " << a.label << " | " << a.batch << " | " << a.s_q << " | " << a.heads << " | "
              << (a.varlen ? "~" : "") << a.seqlen << " | " << format_number(r.seconds * 1e6, 1) << " | "
              << format_number(r.gbps(), 0) << " | " << format_number(r.tflops(), 1) << " | " << a.flashmla_us << " | "
              << format_number(vs, 2) << "x | " << fraction_cell(r.gbps(), copy_gbps) << " | "
              << fraction_cell(r.tflops(), matmul_tflops) << " | " << r.kernel << " |" << std::endl;
    nlohmann::json j = row_json(r);
    j["label"] = a.label;
    j["anchor_case"] = index;
    j["flashmla_us"] = a.flashmla_us;
    j["speed_vs_flashmla"] = vs;
    j["fraction_of_copy_ceiling"] = fraction_json(r.gbps(), copy_gbps);
    j["fraction_of_matmul_ceiling"] = fraction_json(r.tflops(), matmul_tflops);
    rows.push_back(j);
  }
  std::cout << "(vs FlashMLA = FlashMLA's time on the " << table.gpu << " (anchor table " << table.key
            << ") / this time: above 1 is faster"
            << (choice.same_gpu ? std::string() : std::string("; this device is not an ") + table.gpu)
            << ". The ceilings are this device's, measured before the table)\n";
  if (!o.json.empty()) {
    const nlohmann::json matmul = matmul_tflops ? nlohmann::json(*matmul_tflops) : nlohmann::json(nullptr);
    files.write("--json", json_body({{"device", device->name()},
                                     {"hardware", device->hardware_name()},
                                     {"copy_ceiling_gbps", copy_gbps ? nlohmann::json(*copy_gbps) : nlohmann::json(nullptr)},
                                     {"matmul_ceiling_tflops", matmul},
                                     {"anchor_gpu", table.key},
                                     {"anchor_same_gpu", choice.same_gpu},
                                     {"anchor_choice", choice.why},
                                     {"anchor_table",
                                      {{"gpu", table.gpu},
                                       {"measured", table.measured},
                                       {"copy_ceiling_gbps", table.copy_gbps},
                                       {"matmul_ceiling_tflops", table.matmul_tflops}}},
                                     {"rows", rows}}));
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  static BenchOptions o;
  auto* cmd = app.add_subcommand("bench", "Benchmark one shape: median time, GB/s, FLOP/s (conventions: docs/results.md)");
  o.config.add_to(*cmd, true);
  o.shape.add_to(*cmd);
  cmd->add_option("--warmup", o.warmup, "Runs before timing (at least 1 is made: it sizes the timed batches)")->check(CLI::Range(0, 10000));
  cmd->add_option("--iters", o.iters, "Timed runs")->check(CLI::Range(1, 100000));
  auto* anchors = cmd->add_flag("--anchors", o.anchors,
                                "Run every case of FlashMLA's table for this GPU (shape flags ignored) with ratios to "
                                "FlashMLA and to the copy and matmul ceilings measured in the same run");
  // The table is known only once the device is open (auto): the range here is the longest
  // table's, and bench_anchors checks the chosen one.
  cmd->add_option("--anchor-case", o.anchor_case,
                  "With --anchors: only row I of the table (0-based), e.g. under a profiler")
      ->check(CLI::Range(0, max_anchor_cases() - 1))
      ->needs(anchors);
  std::vector<std::string> gpus = {"auto"};
  for (const AnchorTable& t : kAnchorTables) gpus.emplace_back(t.key);
  cmd->add_option("--anchor-gpu", o.anchor_gpu,
                  "With --anchors: whose FlashMLA figures: auto (the table of the GPU this runs on; the H200's on "
                  "any other device) or a table's GPU")
      ->check(CLI::IsMember(gpus))
      ->needs(anchors);
  cmd->add_option("--json", o.json, "Write the result as JSON to this file");
  o.memory.add_to(*cmd);
  cmd->callback([] {
    // Output paths are checked before the benchmark runs; the files appear only if it completes.
    OutputFiles files;
    files.output("--json", o.json);
    files.output("--trace", o.config.trace_file);
    files.input("--config", o.config.path);
    files.open();
    BenchOptions run = o;
    if (files.wants("--trace")) run.config.trace_file = files.write_path("--trace");
    run.anchors ? bench_anchors(run, files) : bench_one(run, files);
    if (files.wants("--trace")) files.written_elsewhere("--trace");
    files.commit();
  });
}

}  // namespace mla::cli
