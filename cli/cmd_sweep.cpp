// `mla sweep`: latency over a grid of batch x length, once per config variant (by default a
// simulator's double buffering on and off), as a table and JSON.
#include <iostream>
#include <sstream>

#include "commands.hpp"
#include "mla/metrics.hpp"
#include "mla/validate.hpp"
#include "options.hpp"
#include "report.hpp"
#include "device_tensors.hpp"

namespace mla::cli {

namespace {

struct SweepOptions {
  ConfigOptions config;
  ShapeOptions shape;
  std::vector<int64_t> batches{1, 8, 32, 128};
  std::vector<int64_t> seqlens{512, 2048, 8192};
  std::vector<std::string> variants{"kernel.double_buffer=true", "kernel.double_buffer=false"};
  bool functional = false;
  std::string json;
};

void sweep(SweepOptions o) {
  if (!o.functional) o.config.timing_only = true;
  nlohmann::json rows = nlohmann::json::array();
  std::cout << "| batch | length |";
  for (const auto& v : o.variants) std::cout << " " << v << " (us) |";
  std::cout << (o.variants.size() == 2 ? " ratio |" : "") << "\n";
  std::vector<std::unique_ptr<Device>> devices;
  for (const auto& v : o.variants) {
    ConfigOptions c = o.config;
    c.overrides.push_back(v);
    devices.push_back(open_from(c));
  }
  for (int64_t b : o.batches)
    for (int64_t len : o.seqlens) {
      ShapeOptions s = o.shape;
      s.batch = b;
      s.seqlen = len;
      Problem base = s.problem();
      validate_problem(base);
      HostInputs in = make_random_inputs(base, s.spec());
      std::cout << "| " << b << " | " << len << " |";
      std::vector<double> times;
      for (size_t k = 0; k < devices.size(); ++k) {
        auto plan = devices[k]->plan(in.problem);
        DeviceTensors tensors(*devices[k], in);
        auto schedule = plan->schedule(tensors.args().cache_seqlens);
        RunResult r = plan->run(tensors.args(), *schedule);
        devices[k]->synchronize();
        times.push_back(r.seconds);
        rows.push_back({{"batch", b},
                        {"seqlen", len},
                        {"variant", o.variants[k]},
                        {"kernel", r.kernel},
                        {"seconds", r.seconds},
                        {"simulated", r.simulated},
                        {"gb_per_s", r.seconds > 0 ? anchor_bytes(in.problem, in.mean_seqlen()) / r.seconds / 1e9 : 0.0},
                        {"report", parse_report(r)}});
        std::cout << " " << (r.seconds >= 0 ? format_number(r.seconds * 1e6, 1) : std::string("n/a")) << " |";
      }
      if (times.size() == 2 && times[0] > 0) std::cout << " " << format_number(times[1] / times[0], 2) << " |";
      std::cout << std::endl;
    }
  if (!o.json.empty()) write_json_file(o.json, {{"rows", rows}});
}

}  // namespace

void add_sweep_command(CLI::App& app) {
  static SweepOptions o;
  auto* cmd = app.add_subcommand("sweep", "Latency over batch x length for each config variant (default: double buffering on/off)");
  o.config.add_to(*cmd, true);
  o.shape.add_to(*cmd);
  cmd->add_option("--batches", o.batches, "Batch sizes")->delimiter(',');
  cmd->add_option("--seqlens", o.seqlens, "Sequence lengths")->delimiter(',');
  cmd->add_option("--variants", o.variants, "Config overrides, one variant each (key=value)");
  cmd->add_flag("--functional", o.functional, "Compute outputs too (default: timing only)");
  cmd->add_option("--json", o.json, "Write the rows as JSON to this file");
  cmd->callback([] { sweep(o); });
}

}  // namespace mla::cli
