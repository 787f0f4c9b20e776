// `mla sweep`: latency over a grid of batch x length, once per config variant (for a
// simulator by default its double buffering on and off), as a table and JSON.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <sstream>

#include "commands.hpp"
#include "device_tensors.hpp"
#include "memory_budget.hpp"
#include "mla/error.hpp"
#include "mla/metrics.hpp"
#include "mla/registry.hpp"
#include "mla/validate.hpp"
#include "options.hpp"
#include "output_files.hpp"
#include "report.hpp"

namespace mla::cli {

namespace {

const std::vector<std::string> kSimVariants{"kernel.double_buffer=true", "kernel.double_buffer=false"};

struct SweepOptions {
  ConfigOptions config;
  ShapeOptions shape;
  std::vector<int64_t> batches{1, 8, 32, 128};
  std::vector<int64_t> seqlens{512, 2048, 8192};
  std::vector<std::string> variants;  // empty: kSimVariants for a simulator, the config as given otherwise
  bool functional = false;
  std::string json;
  MemoryOptions memory;
};

bool is_simulator(const nlohmann::json& config) {
  const auto sims = simulated_backends();
  return config.is_object() && config.contains("backend") && config["backend"].is_string() &&
         std::find(sims.begin(), sims.end(), config["backend"].get<std::string>()) != sims.end();
}

void sweep(SweepOptions o) {
  OutputFiles files;
  files.output("--json", o.json);
  files.output("--trace", o.config.trace_file);
  files.input("--config", o.config.path);
  files.open();
  if (files.wants("--trace")) o.config.trace_file = files.write_path("--trace");

  // A real backend has no double buffering to toggle and no timing-only mode: it computes and
  // its runs are timed on the wall clock.
  const bool simulator = is_simulator(o.config.load());
  if (o.variants.empty()) o.variants = simulator ? kSimVariants : std::vector<std::string>{""};
  if (!o.functional && simulator) o.config.timing_only = true;
  std::vector<std::unique_ptr<Device>> devices;
  for (const auto& v : o.variants) {
    ConfigOptions c = o.config;
    if (!v.empty()) c.overrides.push_back(v);
    devices.push_back(open_from(c));
  }
  // The whole grid is checked before the first point runs.
  std::vector<std::pair<ShapeOptions, Problem>> points;
  for (int64_t b : o.batches)
    for (int64_t len : o.seqlens) {
      ShapeOptions s = o.shape;
      s.batch = b;
      s.seqlen = len;
      Problem base = s.problem();
      validate_problem(base);
      std::vector<int32_t> lens;
      const Problem sized = random_inputs_problem(base, s.spec(), &lens);
      const int64_t longest = lens.empty() ? 0 : *std::max_element(lens.begin(), lens.end());
      o.memory.check(decode_memory(sized, longest, nullptr, false),
                     "batch " + std::to_string(b) + ", length " + std::to_string(len));
      points.emplace_back(s, base);
    }

  nlohmann::json rows = nlohmann::json::array();
  const char* unit = simulator ? "simulated us" : "wall us";
  std::cout << "| batch | length |";
  for (const auto& v : o.variants) std::cout << " " << (v.empty() ? std::string("as configured") : v) << " (" << unit << ") |";
  std::cout << (o.variants.size() == 2 ? " ratio |" : "") << "\n";
  for (const auto& [s, base] : points) {
    HostInputs in = make_random_inputs(base, s.spec());
    std::cout << "| " << s.batch << " | " << s.seqlen << " |";
    std::vector<double> times;
    for (size_t k = 0; k < devices.size(); ++k) {
      auto plan = devices[k]->plan(in.problem);
      DeviceTensors tensors(*devices[k], in);
      auto schedule = plan->schedule(tensors.args().cache_seqlens);
      const auto start = std::chrono::steady_clock::now();
      RunResult r = plan->run(tensors.args(), *schedule);
      devices[k]->synchronize();
      const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const bool modelled = r.simulated && r.seconds >= 0;
      const double seconds = modelled ? r.seconds : wall;
      times.push_back(seconds);
      rows.push_back({{"batch", s.batch},
                      {"seqlen", s.seqlen},
                      {"variant", o.variants[k]},
                      {"kernel", r.kernel},
                      {"seconds", seconds},
                      {"simulated", modelled},
                      {"gb_per_s", seconds > 0 ? anchor_bytes(in.problem, in.mean_seqlen()) / seconds / 1e9 : 0.0},
                      {"report", parse_report(r)}});
      std::cout << " " << format_number(seconds * 1e6, 1) << " |";
    }
    // Every row has the header's columns, whatever the times are.
    if (times.size() == 2) std::cout << " " << (times[0] > 0 ? format_number(times[1] / times[0], 2) : "-") << " |";
    std::cout << std::endl;
  }
  if (files.wants("--trace")) files.written_elsewhere("--trace");
  if (files.wants("--json")) files.write("--json", json_body({{"rows", rows}}));
  files.commit();
}

}  // namespace

void add_sweep_command(CLI::App& app) {
  static SweepOptions o;
  auto* cmd = app.add_subcommand("sweep", "Latency over batch x length for each config variant (default for a "
                                          "simulator: double buffering on/off)");
  o.config.add_to(*cmd, true);
  o.shape.add_to(*cmd);
  o.memory.add_to(*cmd);
  cmd->add_option("--batches", o.batches, "Batch sizes")->delimiter(',');
  cmd->add_option("--seqlens", o.seqlens, "Sequence lengths")->delimiter(',');
  cmd->add_option("--variants", o.variants,
                  "Config overrides, one variant each (key=value; default for a simulator: kernel.double_buffer=true "
                  "and =false; for a real backend: the config as given)");
  cmd->add_flag("--functional", o.functional, "Simulators: compute outputs too (default: timing only)");
  cmd->add_option("--json", o.json, "Write the rows as JSON to this file");
  cmd->callback([] { sweep(o); });
}

}  // namespace mla::cli
