#include "compare_runner.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>

#include "device_tensors.hpp"
#include "mla/compare.hpp"
#include "mla/error.hpp"
#include "mla/registry.hpp"
#include "quantization_check.hpp"
#include "report.hpp"

namespace mla::cli {

namespace {

std::string file_name(const std::string& path) {
  auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// "3:kernel.double_buffer=false" -> (3, "kernel.double_buffer=false"); no prefix -> (0, all).
std::pair<size_t, std::string> split_set(const std::string& arg, size_t configs) {
  const auto colon = arg.find(':'), eq = arg.find('=');
  if (colon == std::string::npos || (eq != std::string::npos && colon > eq)) return {0, arg};
  const std::string index = arg.substr(0, colon);
  size_t n = 0;
  bool digits = !index.empty() && std::all_of(index.begin(), index.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
  if (digits) n = std::stoul(index.substr(0, 9));
  if (!digits || n < 1 || n > configs)
    fail(ErrorCode::invalid_argument, "--set \"" + arg + "\": the prefix before ':' must be a config number from 1 to " +
                                          std::to_string(configs));
  return {n, arg.substr(colon + 1)};
}

// The comparison's pass rule (compare.cpp) with the case's own tolerance instead of the dtype's.
void apply_tolerance(Comparison& c, const Tolerance& t) {
  c.tolerance = t;
  c.passed = c.nonfinite_mismatches == 0 && c.rel_l2_error <= t.rel_l2 && c.max_abs_error <= t.max_abs &&
             c.lse_max_abs_error <= t.lse_abs && c.trustworthy;
}

std::string bytes_of(const HostTensor& t) { return std::string(static_cast<const char*>(t.data()), t.bytes()); }

void hash_bytes(uint64_t& h, const HostTensor& t) {
  if (!t.defined()) return;
  const auto* p = static_cast<const unsigned char*>(t.data());
  for (size_t i = 0; i < t.bytes(); ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
}

}  // namespace

uint64_t input_fingerprint(const HostInputs& in) {
  uint64_t h = 1469598103934665603ull;
  for (const RunOperand& op : kRunOperands)
    if (!is_output_operand(op)) hash_bytes(h, host_operand(in, op));
  return h;
}

const char* status_name(Status s) {
  switch (s) {
    case Status::pass: return "pass";
    case Status::fail: return "FAIL";
    case Status::mistrusted: return "MISTRUSTED";
    case Status::nondeterministic: return "NONDETERMINISTIC";
    case Status::unsupported: return "unsupported";
    case Status::skipped: return "skipped";
    case Status::error: return "ERROR";
  }
  return "?";
}

bool is_failure(Status s) {
  return s == Status::fail || s == Status::mistrusted || s == Status::nondeterministic || s == Status::error;
}

std::vector<Target> open_targets(const std::vector<std::string>& paths, const std::vector<std::string>& set_args) {
  std::vector<Target> targets(paths.size());
  std::map<std::string, int> seen;
  for (size_t i = 0; i < paths.size(); ++i) {
    Target& t = targets[i];
    t.path = paths[i];
    const int n = ++seen[file_name(paths[i])];
    t.label = file_name(paths[i]) + (n > 1 ? "#" + std::to_string(n) : "");
  }
  for (const auto& arg : set_args) {
    auto [index, assignment] = split_set(arg, paths.size());
    for (size_t i = 0; i < targets.size(); ++i)
      if (index == 0 || index == i + 1) targets[i].overrides.push_back(assignment);
  }
  for (Target& t : targets) {
    nlohmann::json config = read_config_file(t.path);  // io_error / invalid_config name the file
    for (const auto& o : t.overrides) apply_override(config, o);
    auto issues = validate_config(config);
    if (!issues.empty()) {
      std::string text;
      for (const auto& issue : issues) text += (text.empty() ? "" : "; ") + issue.to_string();
      fail(ErrorCode::invalid_config, t.path + ": invalid config: " + text);
    }
    t.backend = config.value("backend", std::string());
    try {
      t.device = open_device(config);
      t.device_name = t.device->name();
    } catch (const Error& e) {
      if (e.code() == ErrorCode::backend_unavailable) t.skip_reason = e.what();
      else t.open_error = std::string(error_code_name(e.code())) + ": " + e.what();
    } catch (const std::exception& e) {
      t.open_error = std::string("internal: ") + e.what();
    }
  }
  return targets;
}

Outcome run_case(Target& target, const CompareCase& c, HostInputs& in, const ReferenceOutput& ref,
                 const ReferenceOutput* baseline, int repeat) {
  Outcome o;
  if (!target.skip_reason.empty()) {
    o.status = Status::skipped;
    o.message = target.skip_reason;
    return o;
  }
  if (!target.device) {
    o.status = Status::error;
    o.message = target.open_error;
    return o;
  }
  Device& device = *target.device;
  // A backend that cannot run the case says so when asked, and the case is reported apart
  // from wrong answers ("unsupported" with its reason), as ggml's test-backend-ops does.
  if (const Support support = device.supports(in.problem); !support) {
    o.status = support.code == ErrorCode::unsupported ? Status::unsupported : Status::error;
    o.message = std::string(error_code_name(support.code)) + ": " + support.reason;
    return o;
  }
  std::unique_ptr<Plan> plan;
  try {
    plan = device.plan(in.problem);
    o.kernel = plan->kernel_name();
  } catch (const Error& e) {
    // supports() said yes: only a shape that does not fit the modelled memories (known once
    // the plan is sized) is still a refusal; any other error is the backend's inconsistency.
    const bool refusal = e.code() == ErrorCode::out_of_memory;
    o.status = refusal ? Status::unsupported : Status::error;
    o.message = std::string(error_code_name(e.code())) + ": " + e.what() +
                (refusal ? "" : " (although Device::supports accepted the problem)");
    return o;
  }
  try {
    DeviceTensors tensors(device, in);
    auto schedule = plan->schedule(tensors.args().cache_seqlens);
    std::string first_out, first_lse;
    double best_wall = -1;
    for (int r = 0; r < repeat; ++r) {
      tensors.poison_outputs(in);  // a run that leaves elements unwritten shows NaN
      const auto start = std::chrono::steady_clock::now();
      RunResult result = plan->run(tensors.args(), *schedule);
      tensors.fetch_outputs(in);  // synchronises, so the wall time covers the whole run
      const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      best_wall = best_wall < 0 ? wall : std::min(best_wall, wall);
      ++o.runs;
      if (r == 0) {
        o.kernel = result.kernel;
        o.simulated = result.simulated && result.seconds >= 0;
        if (o.simulated) o.seconds = result.seconds;
        const nlohmann::json report = parse_report(result);
        if (report.is_object() && report.value("timing_only", false)) {
          o.status = Status::skipped;
          o.message = "the config is timing-only (kernel.timing_only): it computes no outputs to compare";
          return o;
        }
        o.comparison = compare_to_reference(in.problem, ref, in.out.view(), in.lse.view());
        apply_tolerance(o.comparison, c.tolerance());
        o.compared = true;
        if (baseline) {
          o.quantization = quantization_error(in, *baseline, in.out.view(), in.lse.view());
          o.quantization_compared = true;
        }
        first_out = bytes_of(in.out);
        first_lse = bytes_of(in.lse);
      } else if (o.deterministic && (bytes_of(in.out) != first_out || bytes_of(in.lse) != first_lse)) {
        o.deterministic = false;
        int64_t differing = 0;
        const std::string now = bytes_of(in.out);
        const size_t elem = dtype_size(in.problem.dtype);
        for (size_t k = 0; k + elem <= now.size(); k += elem)
          differing += std::memcmp(now.data() + k, first_out.data() + k, elem) != 0;
        o.determinism = "run " + std::to_string(r + 1) + " differs from run 1 in " + std::to_string(differing) +
                        " out elements" + (bytes_of(in.lse) != first_lse ? " and in lse" : "");
      }
    }
    if (!o.simulated) o.seconds = best_wall;
    if (repeat > 1 && o.deterministic)
      o.determinism = "bitwise identical over " + std::to_string(o.runs) + " runs";
  } catch (const Error& e) {
    o.status = e.code() == ErrorCode::unsupported ? Status::unsupported : Status::error;
    o.message = std::string(error_code_name(e.code())) + ": " + e.what();
    return o;
  } catch (const std::bad_alloc&) {
    o.status = Status::error;
    o.message = "out_of_memory: the host ran out of memory";
    return o;
  } catch (const std::exception& e) {
    o.status = Status::error;
    o.message = std::string("internal: ") + e.what();
    return o;
  }
  const Comparison& cmp = o.comparison;
  const bool quantization_ok = !o.quantization_compared || o.quantization.passed;
  if (!cmp.trustworthy) o.status = Status::mistrusted;
  else if (!cmp.passed || !quantization_ok) o.status = Status::fail;
  else if (!o.deterministic) o.status = Status::nondeterministic;
  else o.status = Status::pass;
  o.message = cmp.summary();
  if (o.quantization_compared) o.message += "; quantization vs bf16 cache: " + o.quantization.summary();
  if (!o.deterministic) o.message += "; NOT deterministic: " + o.determinism;
  return o;
}

}  // namespace mla::cli
