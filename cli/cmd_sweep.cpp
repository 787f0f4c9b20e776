// `mla sweep`: latency over a grid of batch x length, once per config variant (for a
// simulator by default its double buffering on and off) and KV-cache format (for a simulator
// by default the plain format against fp8_ds_mla), as a table and JSON.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <optional>
#include <sstream>

#include "commands.hpp"
#include "device_tensors.hpp"
#include "memory_budget.hpp"
#include "mla/error.hpp"
#include "mla/kv_format.hpp"
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
  std::vector<std::string> kv_formats;  // empty: see default_kv_formats
  bool functional = false;
  std::string json;
  MemoryOptions memory;
};

bool is_simulator(const nlohmann::json& config) {
  const auto sims = simulated_backends();
  return config.is_object() && config.contains("backend") && config["backend"].is_string() &&
         std::find(sims.begin(), sims.end(), config["backend"].get<std::string>()) != sims.end();
}

// A simulator shows what an 8-bit cache buys (the shape's plain format against DeepSeek's
// fp8_ds_mla); a real backend runs the shape's format only, since most refuse quantized caches.
// A format given on the shape (--kv-format, where the shape options have it) is the only one.
std::vector<KvFormat> default_kv_formats(const SweepOptions& o, bool simulator) {
  const KvFormat own = o.shape.problem().kv_format;
  if (!simulator || o.shape.given("--kv-format") || own == KvFormat::fp8_ds_mla) return {own};
  return {own, KvFormat::fp8_ds_mla};
}

std::vector<KvFormat> parse_kv_formats(const std::vector<std::string>& names) {
  std::vector<KvFormat> out;
  for (const std::string& name : names) {
    const std::optional<KvFormat> f = parse_kv_format(name);
    if (!f) fail(ErrorCode::invalid_argument, "--kv-formats: unknown KV format \"" + name + "\" (one of " + kv_format_names() + ")");
    if (std::find(out.begin(), out.end(), *f) != out.end())
      fail(ErrorCode::invalid_argument, "--kv-formats: \"" + name + "\" is listed twice");
    out.push_back(*f);
  }
  return out;
}

// One run of one point: the modelled latency on a simulator, else the wall time of run().
nlohmann::json time_point(Device& device, HostInputs& in) {
  DeviceTensors tensors(device, in);
  RunArgs args = tensors.args();  // every operand, kv_scale included (kRunOperands)
  const auto planned = std::chrono::steady_clock::now();
  auto plan = device.plan(in.problem);
  auto schedule = plan->schedule(args.cache_seqlens);
  const auto start = std::chrono::steady_clock::now();
  RunResult r = plan->run(args, *schedule);
  device.synchronize();
  const auto end = std::chrono::steady_clock::now();
  const double wall = std::chrono::duration<double>(end - start).count();
  // A simulator's own cost: timing-only work happens in plan() and schedule(), functional in run().
  const double wall_all = std::chrono::duration<double>(end - planned).count();
  const bool modelled = r.simulated && r.seconds >= 0;
  const double seconds = modelled ? r.seconds : wall;
  return {{"kernel", r.kernel},
          {"seconds", seconds},
          {"simulated", modelled},
          {"wall_seconds", wall_all},
          {"gb_per_s", seconds > 0 ? anchor_bytes(in.problem, in.mean_seqlen()) / seconds / 1e9 : 0.0},
          {"report", parse_report(r)}};
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
  const std::vector<KvFormat> formats = o.kv_formats.empty() ? default_kv_formats(o, simulator) : parse_kv_formats(o.kv_formats);
  std::vector<std::unique_ptr<Device>> devices;
  for (const auto& v : o.variants) {
    ConfigOptions c = o.config;
    if (!v.empty()) c.overrides.push_back(v);
    devices.push_back(open_from(c));
  }
  // The whole grid is checked before the first point runs: shapes, memory, and that every
  // device runs every format (a refusal is an error here, not a hole in the table).
  std::vector<std::pair<ShapeOptions, Problem>> points;
  for (int64_t b : o.batches)
    for (int64_t len : o.seqlens) {
      ShapeOptions s = o.shape;
      s.batch = b;
      s.seqlen = len;
      Problem base = s.problem();
      validate_problem(base);
      for (KvFormat f : formats) {
        Problem p = base;
        p.kv_format = f;
        std::vector<int32_t> lens;
        const Problem sized = random_inputs_problem(p, s.spec(), &lens);
        const int64_t longest = lens.empty() ? 0 : *std::max_element(lens.begin(), lens.end());
        o.memory.check(decode_memory(sized, longest, nullptr, false), "batch " + std::to_string(b) + ", length " +
                                                                          std::to_string(len) + ", kv format " + kv_format_name(f));
        for (const auto& device : devices)
          if (const Support yes = device->supports(p); !yes)
            fail(yes.code, std::string("--kv-formats: ") + kv_format_name(f) + ": " + yes.reason);
      }
      points.emplace_back(s, base);
    }

  // One row per (batch, length); a column per format and variant, then the variants' ratio for
  // the first format and each other format's time over the first's (first variant).
  nlohmann::json rows = nlohmann::json::array();
  const char* unit = simulator ? "simulated us" : "wall us";
  const bool several_formats = formats.size() > 1;
  const std::string first_format = kv_format_name(formats.front());
  std::cout << "| batch | length |";
  for (KvFormat f : formats)
    for (const auto& v : o.variants)
      std::cout << " " << (several_formats ? std::string(kv_format_name(f)) + " " : std::string())
                << (v.empty() ? std::string("as configured") : v) << " (" << unit << ") |";
  if (o.variants.size() == 2) std::cout << (several_formats ? " ratio (" + first_format + ") |" : std::string(" ratio |"));
  for (size_t f = 1; f < formats.size(); ++f) std::cout << " " << kv_format_name(formats[f]) << " / " << first_format << " |";
  std::cout << "\n";
  for (const auto& [s, base] : points) {
    std::cout << "| " << s.batch << " | " << s.seqlen << " |";
    std::vector<std::vector<double>> times(formats.size());  // [format][variant]
    for (size_t f = 0; f < formats.size(); ++f) {
      Problem p = base;
      p.kv_format = formats[f];
      HostInputs in = make_random_inputs(p, s.spec());
      for (size_t k = 0; k < devices.size(); ++k) {
        nlohmann::json row = time_point(*devices[k], in);
        const double seconds = row["seconds"].get<double>();
        times[f].push_back(seconds);
        row["batch"] = s.batch;
        row["seqlen"] = s.seqlen;
        row["kv_format"] = kv_format_name(formats[f]);
        row["variant"] = o.variants[k];
        rows.push_back(std::move(row));
        std::cout << " " << format_number(seconds * 1e6, 1) << " |" << std::flush;
      }
    }
    // Every row has the header's columns, whatever the times are.
    auto ratio = [](double num, double den) { return den > 0 ? format_number(num / den, 2) : std::string("-"); };
    if (o.variants.size() == 2) std::cout << " " << ratio(times[0][1], times[0][0]) << " |";
    for (size_t f = 1; f < formats.size(); ++f) std::cout << " " << ratio(times[f][0], times[0][0]) << " |";
    std::cout << std::endl;
  }
  if (files.wants("--trace")) files.written_elsewhere("--trace");
  if (files.wants("--json")) files.write("--json", json_body({{"rows", rows}}));
  files.commit();
}

}  // namespace

void add_sweep_command(CLI::App& app) {
  static SweepOptions o;
  auto* cmd = app.add_subcommand("sweep", "Latency over batch x length for each config variant and KV format "
                                          "(default for a simulator: double buffering on/off, the plain cache "
                                          "against fp8_ds_mla)");
  o.config.add_to(*cmd, true);
  o.shape.add_to(*cmd);
  o.memory.add_to(*cmd);
  cmd->add_option("--batches", o.batches, "Batch sizes")->delimiter(',');
  cmd->add_option("--seqlens", o.seqlens, "Sequence lengths")->delimiter(',');
  cmd->add_option("--variants", o.variants,
                  "Config overrides, one variant each (key=value; default for a simulator: kernel.double_buffer=true "
                  "and =false; for a real backend: the config as given)");
  cmd->add_option("--kv-formats", o.kv_formats,
                  "KV-cache formats to compare, the first is the baseline (" + kv_format_names() +
                      "; default for a simulator: the shape's format and fp8_ds_mla; otherwise the shape's format)")
      ->delimiter(',');
  cmd->add_flag("--functional", o.functional, "Simulators: compute outputs too (default: timing only)");
  cmd->add_option("--json", o.json, "Write the rows as JSON to this file");
  cmd->callback([] { sweep(o); });
}

}  // namespace mla::cli
