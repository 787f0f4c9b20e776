// Running one case on one device for `mla compare`: ask Device::supports (a refusal is
// "unsupported" with the backend's reason, not a failure), plan, mirror the shared inputs, run --repeat times with outputs re-poisoned before each
// run, compare the first run with the reference and the later runs bit for bit with the first.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "compare_cases.hpp"
#include "mla/mla.hpp"
#include "mla/reference.hpp"

namespace mla::cli {

// One --configs entry, opened once for the whole run.
struct Target {
  std::string path;                    // as given on the command line
  std::string label;                   // short name for tables: the file name, "#k" when repeated
  std::vector<std::string> overrides;  // the --set assignments that apply to this config
  std::string backend;                 // the config's "backend"
  std::string device_name;
  std::unique_ptr<Device> device;      // null when skipped or broken
  std::string skip_reason;             // backend unavailable: every case is skipped with this
  std::string open_error;              // opening failed otherwise: every case is an error
};

// `set_args` are the --set values: "key.path=value" applies to every config, "N:key=value"
// only to the N-th (1-based). Throws Error(invalid_config / io_error / invalid_argument) when a
// config cannot be read or is invalid: an invalid config stops the run, an unavailable backend
// does not.
std::vector<Target> open_targets(const std::vector<std::string>& paths, const std::vector<std::string>& set_args);

enum class Status { pass, fail, mistrusted, nondeterministic, unsupported, skipped, error };
const char* status_name(Status status);
bool is_failure(Status status);  // fail, mistrusted, nondeterministic, error

struct Outcome {
  Status status = Status::error;
  std::string kernel;
  std::string message;      // the reason for unsupported / skipped / error, the summary otherwise
  bool compared = false;    // metrics below are meaningful
  Comparison comparison;    // with the case's tolerance applied
  // Quantized KV formats: the result against the reference on the bf16 values the cache was
  // made from, with quantization_tolerance(problem). Must pass too.
  bool quantization_compared = false;
  Comparison quantization;
  double seconds = -1;      // simulated latency when `simulated`, else the fastest wall time
  bool simulated = false;
  int runs = 0;             // runs that completed
  bool deterministic = true;  // runs 2..N bitwise equal to run 1 (only meaningful when runs > 1)
  std::string determinism;    // how the determinism check went, in words
};

// `in` holds the case's inputs (outputs are overwritten); `ref` its reference; `baseline` (null
// for plain formats) the reference on the unquantized bf16 cache.
Outcome run_case(Target& target, const CompareCase& c, HostInputs& in, const ReferenceOutput& ref,
                 const ReferenceOutput* baseline, int repeat);

// A 64-bit FNV-1a hash of the input tensors, to notice a backend that writes into its inputs.
uint64_t input_fingerprint(const HostInputs& in);

}  // namespace mla::cli
