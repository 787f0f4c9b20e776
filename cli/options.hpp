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
  [[nodiscard]] nlohmann::json load() const;  // file (or default) with overrides applied
};

struct ShapeOptions {
  int64_t batch = 8, s_q = 1, heads = 128, kv_heads = 1, seqlen = 4096, page_size = 64;
  bool varlen = false, causal = false;
  std::string dtype = "bf16", variant = "latent";
  float softmax_scale = 0.0f;
  uint64_t seed = 1;
  void add_to(CLI::App& app);
  [[nodiscard]] Problem problem() const;  // num_blocks etc. filled by make_random_inputs
  [[nodiscard]] InputSpec spec() const;
  // "--variant latent --batch 2 ... --seed 7": the flags that give back this shape.
  [[nodiscard]] std::string flags() const;
};

// Opens the device named by the config; the errors carry the config path.
std::unique_ptr<Device> open_from(const ConfigOptions& options);

}  // namespace mla::cli
