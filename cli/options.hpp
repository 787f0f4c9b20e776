// Command-line options shared by the subcommands: which config, the problem shape, inputs.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "mla/inputs.hpp"
#include "mla/mla.hpp"

namespace mla::cli {

struct ConfigOptions {
  std::string path;                    // empty: the embedded configs/cpu.json
  std::vector<std::string> overrides;  // --set key.path=value
  bool timing_only = false;            // -> kernel.timing_only=true
  std::string trace_file;              // -> trace_file=...
  void add_to(CLI::App& app, bool with_sim_flags);
  // The file (or the default) with the overrides applied. Error(invalid_argument) when
  // --timing-only or --trace is given for a backend that is not a simulator.
  [[nodiscard]] nlohmann::json load() const;
};

// True when the config asks a simulator for timing only (no outputs are computed).
bool is_timing_only(const nlohmann::json& config);

struct ShapeOptions {
  int64_t batch = 8, s_q = 1, heads = 128, kv_heads = 1, seqlen = 4096, page_size = 64;
  bool varlen = false, causal = false;
  std::string dtype = "bf16", variant = "latent";
  std::string kv_format;  // a name of the KV format table; empty: the plain format of dtype
  float softmax_scale = 0.0f;
  uint64_t seed = 1;
  int kv_outliers = 0;  // --kv-outliers: KV channels made 32x larger (outlier-heavy caches)
  void add_to(CLI::App& app);
  // The flags given on the command line that set the shape of random inputs (--batch, --s-q,
  // --heads, --kv-heads, --seqlen, --varlen, --page-size, --dtype, --kv-format, --kv-outliers, --seed), which an inputs
  // file already fixes; and whether --variant / --causal / --softmax-scale were given.
  [[nodiscard]] std::vector<std::string> given_shape_flags() const;
  [[nodiscard]] bool given(const std::string& flag) const;
  [[nodiscard]] Problem problem() const;  // num_blocks etc. filled by make_random_inputs
  [[nodiscard]] KvFormat kv() const;      // --kv-format, or the plain format of --dtype
  [[nodiscard]] InputSpec spec() const;
  // "--variant latent --batch 2 ... --seed 7": the flags that give back this shape.
  [[nodiscard]] std::string flags() const;

 private:
  std::vector<std::pair<std::string, const CLI::Option*>> options_;  // set by add_to
};

// --kv-format's help: every format of the table with its one-line description.
std::string kv_format_help();
// Accepts the names of the format table; the error lists them.
CLI::Validator kv_format_validator();
// The format named `name`; Error(invalid_argument) naming `flag` and listing the valid names.
KvFormat parse_kv_format_flag(const std::string& flag, const std::string& name);

// Opens the device named by the config; the errors carry the config path. `timing_only`
// (optional) tells whether the config computes no outputs.
std::unique_ptr<Device> open_from(const ConfigOptions& options, bool* timing_only = nullptr);

}  // namespace mla::cli
