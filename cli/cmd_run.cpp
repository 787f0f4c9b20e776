// `mla run`: one decode on random or file inputs, optionally checked against the reference.
#include <chrono>
#include <iostream>

#include "commands.hpp"
#include "device_tensors.hpp"
#include "mla/compare.hpp"
#include "mla/metrics.hpp"
#include "mla/reference.hpp"
#include "mla/validate.hpp"
#include "options.hpp"
#include "report.hpp"
#include "tensor_files.hpp"

namespace mla::cli {

namespace {

struct RunOptionsCli {
  ConfigOptions config;
  ShapeOptions shape;
  std::string inputs, output, json, save_inputs_path;
  bool check = false, validate = false;
};

nlohmann::json comparison_json(const Comparison& c) {
  return {{"passed", c.passed},
          {"max_abs_error", c.max_abs_error},
          {"rel_l2_error", c.rel_l2_error},
          {"cosine_distance", c.cosine_distance},
          {"lse_max_abs_error", c.lse_max_abs_error},
          {"nonfinite_mismatches", c.nonfinite_mismatches},
          {"unwritten", c.unwritten},
          {"zero_fraction", c.zero_fraction},
          {"trustworthy", c.trustworthy},
          {"tolerance", {{"rel_l2", c.tolerance.rel_l2}, {"max_abs", c.tolerance.max_abs}, {"lse_abs", c.tolerance.lse_abs}}}};
}

void run(const RunOptionsCli& o) {
  // Shape errors first: nothing is allocated for a problem that cannot be valid.
  Problem base = o.shape.problem();
  if (o.inputs.empty()) validate_problem(base);
  auto device = open_from(o.config);
  HostInputs in = o.inputs.empty() ? make_random_inputs(base, o.shape.spec()) : load_inputs(o.inputs, base);
  if (!o.save_inputs_path.empty()) save_inputs(o.save_inputs_path, in);

  auto plan = device->plan(in.problem);
  DeviceTensors tensors(*device, in);
  auto schedule = plan->schedule(tensors.args().cache_seqlens);
  auto start = std::chrono::steady_clock::now();
  RunResult result = plan->run(tensors.args(), *schedule, nullptr, RunOptions{o.validate});
  tensors.fetch_outputs(in);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  nlohmann::json report = parse_report(result);
  const bool timing_only = report.is_object() && report.value("timing_only", false);

  std::cout << "backend: " << result.backend << " (" << device->name() << ")\n"
            << "kernel:  " << result.kernel << "\n"
            << "why:     " << plan->explain() << "\n"
            << "schedule: " << schedule->describe() << "\n"
            << "problem: " << in.problem.describe() << ", mean length " << format_number(in.mean_seqlen(), 1) << "\n"
            << "wall time: " << format_number(wall * 1e6, 1) << " us (first call, includes warm-up)\n";
  if (result.seconds >= 0)
    std::cout << (result.simulated ? "simulated latency: " : "device time: ") << format_number(result.seconds * 1e6, 2)
              << " us\n";
  print_report_lines(report);

  nlohmann::json j = {{"backend", result.backend},
                      {"device", device->name()},
                      {"kernel", result.kernel},
                      {"explain", plan->explain()},
                      {"schedule", schedule->describe()},
                      {"problem", in.problem.describe()},
                      {"mean_seqlen", in.mean_seqlen()},
                      {"bytes", anchor_bytes(in.problem, in.mean_seqlen())},
                      {"flops", anchor_flops(in.problem, in.mean_seqlen())},
                      {"wall_seconds", wall},
                      {"seconds", result.seconds},
                      {"simulated", result.simulated},
                      {"report", report}};
  if (o.check) {
    if (timing_only) {
      std::cout << "check: skipped (timing-only run computes no outputs)\n";
      j["check"] = "skipped: timing-only";
    } else {
      ReferenceOutput ref = reference_decode(in.problem, in.args());
      Comparison c = compare_to_reference(in.problem, ref, in.out.view(), in.lse.view());
      std::cout << "check: " << c.summary() << "\n";
      j["check"] = comparison_json(c);
      if (!c.passed) exit_status() = 1;
    }
  }
  if (!o.output.empty()) save_outputs(o.output, in);
  if (!o.json.empty()) write_json_file(o.json, j);
}

}  // namespace

void add_run_command(CLI::App& app) {
  static RunOptionsCli o;
  auto* cmd = app.add_subcommand("run", "Run one decode on random inputs (shape flags) or on --inputs FILE.safetensors");
  o.config.add_to(*cmd, true);
  o.shape.add_to(*cmd);
  cmd->add_option("--inputs", o.inputs, "Input tensors (safetensors): q | q_nope q_rope w_uk w_uv, kv_cache, block_table, cache_seqlens");
  cmd->add_option("--output", o.output, "Write out and lse to this safetensors file");
  cmd->add_option("--save-inputs", o.save_inputs_path, "Write the (random) inputs to this safetensors file");
  cmd->add_flag("--check", o.check, "Compare with the float64 reference and print the errors (exit 1 on failure)");
  cmd->add_flag("--validate-indices", o.validate, "Check block ids and lengths before running (costs a device sync)");
  cmd->add_option("--json", o.json, "Write a machine-readable result to this file");
  cmd->callback([] { run(o); });
}

}  // namespace mla::cli
