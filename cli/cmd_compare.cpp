// `mla compare`: the conformance harness. Identical inputs (random, poisoned) go through every
// config; each output is compared with the float64 reference, computed once per case. See
// docs/compare.md for the output and the exit codes.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <set>

#include "commands.hpp"
#include "compare_cases.hpp"
#include "compare_report.hpp"
#include "compare_runner.hpp"
#include "memory_budget.hpp"
#include "mla/error.hpp"
#include "mla/reference.hpp"
#include "mla/validate.hpp"
#include "options.hpp"
#include "output_files.hpp"
#include "quantization_check.hpp"
#include "report.hpp"

namespace mla::cli {

namespace {

struct CompareOptions {
  std::vector<std::string> configs;
  std::vector<std::string> sets;
  std::vector<std::string> only;
  std::vector<std::string> kv_formats;  // --kv-format: only the cases of these formats
  std::string cases = "quick";
  std::string json, junit;
  int repeat = 1;
  uint64_t seed = 1;
  MemoryOptions memory;
};

// Every case's memory (tensors, reference, the copies --repeat compares with), checked before
// the first case runs: a case over the limit would otherwise stop the run (or bring in the
// OOM killer) after an hour of others. Backend workspaces are small next to these.
void check_memory(const std::vector<CompareCase>& cases, int repeat,
                  const MemoryOptions& memory) {
  for (const CompareCase& c : cases) {
    std::vector<int32_t> lens;
    const Problem sized = random_inputs_problem(c.problem(), c.spec(), &lens);
    const int64_t longest = lens.empty() ? 0 : *std::max_element(lens.begin(), lens.end());
    MemoryEstimate need = decode_memory(sized, longest, nullptr, true);
    if (repeat > 1)
      need.add("copies of run 1's outputs", saturating_add(tensor_bytes(sized.dtype, {sized.batch, sized.s_q, sized.h_q,
                                                                                     sized.out_width()}),
                                                           tensor_bytes(DType::fp32, {sized.batch, sized.h_q, sized.s_q})));
    memory.check(need, "case \"" + c.name + "\"");
  }
}

std::vector<CompareCase> select(std::vector<CompareCase> cases, const std::vector<std::string>& only) {
  if (only.empty()) return cases;
  std::set<std::string> wanted(only.begin(), only.end());
  std::vector<CompareCase> kept;
  for (auto& c : cases)
    if (wanted.erase(c.name)) kept.push_back(std::move(c));
  if (!wanted.empty()) fail(ErrorCode::invalid_argument, "--only: no case named \"" + *wanted.begin() + "\"");
  return kept;
}

// The cases whose KV format is one of `names` (all when empty).
std::vector<CompareCase> select_formats(std::vector<CompareCase> cases, const std::vector<std::string>& names) {
  if (names.empty()) return cases;
  std::set<KvFormat> wanted;
  for (const auto& n : names) wanted.insert(parse_kv_format_flag("--kv-format", n));
  std::vector<CompareCase> kept;
  for (auto& c : cases)
    if (wanted.count(c.kv())) kept.push_back(std::move(c));
  if (kept.empty()) fail(ErrorCode::invalid_argument, "--kv-format: no case of the selected cases has that KV format");
  return kept;
}

// "q / q_nope / ... / cache_seqlens": the inputs of kRunOperands, for messages.
std::string input_operand_names() {
  std::string names;
  for (const RunOperand& op : kRunOperands)
    if (!is_output_operand(op)) names += (names.empty() ? "" : " / ") + std::string(op.name);
  return names;
}

double since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void compare(const CompareOptions& o) {
  // Fails now, not after an hour of cases, when an output file cannot be written.
  OutputFiles files;
  files.output("--json", o.json);
  files.output("--junit", o.junit);
  for (const auto& path : o.configs) files.input("--configs", path);
  if (o.cases != "quick" && o.cases != "full") files.input("--cases", o.cases);
  files.open();
  // Seeds are assigned over the whole set before --only filters it, so a case keeps its inputs.
  const std::vector<CompareCase> cases = select_formats(select(load_cases(o.cases, o.seed), o.only), o.kv_formats);
  check_memory(cases, o.repeat, o.memory);
  std::vector<Target> targets = open_targets(o.configs, o.sets);  // an invalid config stops here
  for (const auto& t : targets)
    if (!t.skip_reason.empty()) std::cerr << "mla compare: skipping " << t.path << ": " << t.skip_reason << "\n";

  std::vector<Record> records;
  const auto start = std::chrono::steady_clock::now();
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const CompareCase& c = cases[ci];
    const auto case_start = std::chrono::steady_clock::now();
    std::cout << "case " << ci + 1 << "/" << cases.size() << " " << c.name << " (" << c.describe() << ", seed "
              << c.shape.seed << ")\n";
    validate_problem(c.problem());
    HostInputs in = make_random_inputs(c.problem(), c.spec());
    const ReferenceOutput ref = reference_decode(in.problem, in.args());
    const std::optional<ReferenceOutput> baseline = unquantized_reference(in);  // quantized formats only
    const uint64_t fingerprint = input_fingerprint(in);
    std::string progress;
    for (size_t ti = 0; ti < targets.size(); ++ti) {
      Record r;
      r.case_index = ci;
      r.target_index = ti;
      r.outcome = run_case(targets[ti], c, in, ref, baseline ? &*baseline : nullptr, o.repeat);
      if (input_fingerprint(in) != fingerprint) {
        // The next config must see the same inputs: rebuild them (they are a function of the seed).
        r.outcome.status = Status::error;
        r.outcome.message = "the backend wrote into its input tensors (" + input_operand_names() + ")";
        in = make_random_inputs(c.problem(), c.spec());
      }
      r.repro = repro_line(targets[ti], c, o.cases, o.seed, o.repeat, r.outcome);
      print_record(std::cout, targets[ti], c, r);
      progress += std::string(progress.empty() ? "" : ", ") + targets[ti].label + " " + status_name(r.outcome.status);
      records.push_back(std::move(r));
    }
    std::cout << std::flush;
    std::cerr << "[" << ci + 1 << "/" << cases.size() << "] " << c.name << ": " << progress << " ("
              << format_number(since(case_start), 2) << " s)" << std::endl;
  }
  print_summary(std::cout, targets, records, o.repeat);

  int failures = 0, ran = 0;
  for (const auto& r : records) {
    failures += is_failure(r.outcome.status);
    ran += r.outcome.status != Status::skipped;
  }
  std::cout << (failures ? "FAILED: " : "OK: ") << failures << " failing of " << records.size() << " (case x config) in "
            << format_number(since(start), 1) << " s\n";
  if (files.wants("--json")) files.write("--json", json_body(results_json(targets, cases, records, o.cases, o.repeat)));
  if (files.wants("--junit")) {
    const std::string xml = junit_xml(targets, cases, records);
    files.write("--junit", [&](std::ostream& out) { out << xml; });
  }
  files.commit();
  // Failures first; a run where no config could run at all compared nothing: say so (exit 3).
  if (failures) exit_status() = 1;
  else if (ran == 0 && !records.empty()) {
    std::cerr << "mla compare: no config could run (every backend unavailable); nothing was compared\n";
    exit_status() = 3;
  }
}

}  // namespace

void add_compare_command(CLI::App& app) {
  static CompareOptions o;
  auto* cmd = app.add_subcommand(
      "compare", "Run identical inputs through several configs and compare each with the float64 reference");
  cmd->add_option("--configs", o.configs, "Device config files (one or more)")->required()->expected(1, -1);
  cmd->add_option("--cases", o.cases, "quick (default), full, or a cases JSON file (docs/compare.md)");
  cmd->add_option("--only", o.only, "Run only the cases with these names (repeatable)");
  cmd->add_option("--kv-format", o.kv_formats,
                  "Run only the cases of these KV formats (repeatable or comma-separated; every case set has "
                  "cases of each): " + kv_format_names())
      ->delimiter(',')
      ->check(kv_format_validator());
  cmd->add_option("--set", o.sets,
                  "Config override key.path=value for every config, or N:key.path=value for the N-th (repeatable)");
  cmd->add_option("--repeat", o.repeat, "Runs per case and config; > 1 checks the runs are bitwise identical")
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--seed", o.seed, "Base seed: a case without its own seed uses seed + its index");
  cmd->add_option("--json", o.json, "Write every result as JSON to this file");
  cmd->add_option("--junit", o.junit, "Write JUnit XML (a testcase per case and config) to this file");
  o.memory.add_to(*cmd);
  cmd->callback([] { compare(o); });
}

}  // namespace mla::cli
