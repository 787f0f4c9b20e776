// `mla run`: one decode on random or file inputs, optionally checked against the reference.
#include <algorithm>
#include <chrono>
#include <iostream>

#include "commands.hpp"
#include "device_tensors.hpp"
#include "memory_budget.hpp"
#include "mla/compare.hpp"
#include "mla/error.hpp"
#include "mla/metrics.hpp"
#include "mla/reference.hpp"
#include "mla/validate.hpp"
#include "options.hpp"
#include "output_files.hpp"
#include "quantization_check.hpp"
#include "report.hpp"
#include "tensor_files.hpp"

namespace mla::cli {

namespace {

struct RunOptionsCli {
  ConfigOptions config;
  ShapeOptions shape;
  std::string inputs, output, json, save_inputs_path;
  bool check = false, validate = false;
  MemoryOptions memory;
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
  // Every output path is checked (and a regular file's temporary file created) before any
  // work: a bad --json must not cost a whole run, nor leave the other outputs behind.
  OutputFiles files;
  files.output("--save-inputs", o.save_inputs_path);
  files.output("--output", o.output);
  files.output("--json", o.json);
  files.output("--trace", o.config.trace_file);
  files.input("--inputs", o.inputs);
  files.input("--config", o.config.path);
  files.open();

  // Shape errors first: nothing is allocated for a problem that cannot be valid.
  Problem base = o.shape.problem();
  if (o.inputs.empty()) validate_problem(base);
  ConfigOptions config = o.config;
  if (files.wants("--trace")) config.trace_file = files.write_path("--trace");
  bool timing_only = false;
  auto device = open_from(config, &timing_only);
  if (timing_only && files.wants("--output"))
    fail(ErrorCode::invalid_argument, "--output: the config is timing-only (kernel.timing_only), so the run computes "
                                      "no outputs to write");
  const bool check = o.check && !timing_only;

  HostInputs in;
  std::unique_ptr<Plan> plan;
  if (o.inputs.empty()) {
    // Sized and planned first, so a problem over the memory limit is refused before its
    // tensors exist.
    std::vector<int32_t> lens;
    const Problem sized = random_inputs_problem(base, o.shape.spec(), &lens);
    plan = device->plan(sized);
    const int64_t longest = lens.empty() ? 0 : *std::max_element(lens.begin(), lens.end());
    o.memory.check(decode_memory(sized, longest, plan.get(), check), "this run");
    in = make_random_inputs(base, o.shape.spec());
  } else {
    in = load_inputs(o.inputs, o.shape, o.memory.limit());
    plan = device->plan(in.problem);
    const int64_t longest = in.seqlens.empty() ? 0 : *std::max_element(in.seqlens.begin(), in.seqlens.end());
    o.memory.check(decode_memory(in.problem, longest, plan.get(), check), "this run");
  }
  if (files.wants("--save-inputs")) files.write("--save-inputs", [&](std::ostream& out) { save_inputs(out, in); });

  DeviceTensors tensors(*device, in);
  auto schedule = plan->schedule(tensors.args().cache_seqlens);
  auto start = std::chrono::steady_clock::now();
  RunResult result = plan->run(tensors.args(), *schedule, nullptr, RunOptions{o.validate});
  tensors.fetch_outputs(in);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  nlohmann::json report = parse_report(result);
  if (report.is_object() && report.value("timing_only", false) && files.wants("--output"))
    fail(ErrorCode::internal, "--output: the backend ran timing-only although the config did not say so");
  if (files.wants("--trace")) files.written_elsewhere("--trace");

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
    if (!check) {
      std::cout << "check: skipped (timing-only run computes no outputs)\n";
      j["check"] = "skipped: timing-only";
    } else {
      ReferenceOutput ref = reference_decode(in.problem, in.args());
      Comparison c = compare_to_reference(in.problem, ref, in.out.view(), in.lse.view());
      std::cout << "check: " << c.summary() << "\n";
      j["check"] = comparison_json(c);
      if (!c.passed) exit_status() = 1;
      // A quantized cache: also how far the result is from the bf16 values it was made from.
      if (is_quantized(in.problem.kv_format)) {
        if (const std::optional<ReferenceOutput> base = unquantized_reference(in)) {
          const Comparison qc = quantization_error(in, *base, in.out.view(), in.lse.view());
          std::cout << "quantization (vs the bf16 cache): " << qc.summary() << "\n";
          j["quantization_check"] = comparison_json(qc);
          if (!qc.passed) exit_status() = 1;
        } else {
          std::cout << "quantization (vs the bf16 cache): not measured (the inputs file has no kv_unquantized)\n";
          j["quantization_check"] = "skipped: no kv_unquantized";
        }
      }
    }
  }
  if (files.wants("--output")) files.write("--output", [&](std::ostream& out) { save_outputs(out, in); });
  if (files.wants("--json")) files.write("--json", json_body(j));
  files.commit();
}

}  // namespace

void add_run_command(CLI::App& app) {
  static RunOptionsCli o;
  auto* cmd = app.add_subcommand("run", "Run one decode on random inputs (shape flags) or on --inputs FILE.safetensors");
  o.config.add_to(*cmd, true);
  o.shape.add_to(*cmd);
  o.memory.add_to(*cmd);
  cmd->add_option("--inputs", o.inputs, "Input tensors (safetensors): q | q_nope q_rope w_uk w_uv, kv_cache, kv_scale (fp8_e4m3, int8), "
                  "block_table, cache_seqlens; the kv_cache's dtype names the KV format");
  cmd->add_option("--output", o.output, "Write out and lse to this safetensors file");
  cmd->add_option("--save-inputs", o.save_inputs_path, "Write the (random) inputs to this safetensors file");
  cmd->add_flag("--check", o.check, "Compare with the float64 reference and print the errors (exit 1 on failure); a quantized KV "
                "format also gets its quantization error against the bf16 cache");
  cmd->add_flag("--validate-indices", o.validate, "Check block ids and lengths before running (costs a device sync)");
  cmd->add_option("--json", o.json, "Write a machine-readable result to this file");
  cmd->callback([] { run(o); });
}

}  // namespace mla::cli
