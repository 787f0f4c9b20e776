#include "options.hpp"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "mla/error.hpp"
#include "mla/registry.hpp"

namespace mla::cli {

void ConfigOptions::add_to(CLI::App& app, bool with_sim_flags) {
  app.add_option("--config", path, "Device config JSON (default: the embedded configs/cpu.json)");
  app.add_option("--set", overrides, "Override a config field for this run: key.path=value (repeatable)");
  if (with_sim_flags) {
    app.add_flag("--timing-only", timing_only, "Simulators: model time without computing outputs");
    app.add_option("--trace", trace_file, "Simulators: write a Chrome-trace timeline JSON to this file");
  }
}

nlohmann::json ConfigOptions::load() const {
  nlohmann::json config = path.empty() ? default_config() : read_config_file(path);
  for (const auto& o : overrides) apply_override(config, o);
  if (timing_only || !trace_file.empty()) {
    // Said here, in the flag's words, rather than as the backend's "unknown key" later.
    const std::string backend = config.is_object() && config.contains("backend") && config["backend"].is_string()
                                    ? config["backend"].get<std::string>()
                                    : std::string();
    const auto sims = simulated_backends();
    if (!backend.empty() && std::find(sims.begin(), sims.end(), backend) == sims.end()) {
      std::string names;
      for (const auto& s : sims) names += (names.empty() ? "" : ", ") + s;
      fail(ErrorCode::invalid_argument, std::string(timing_only ? "--timing-only" : "--trace") +
                                            ": only simulated backends (" + names + ") model time; " +
                                            (path.empty() ? std::string("the default config") : path) +
                                            " uses backend \"" + backend + "\"");
    }
  }
  if (timing_only) apply_override(config, "kernel.timing_only=true");
  if (!trace_file.empty()) config["trace_file"] = trace_file;
  return config;
}

bool is_timing_only(const nlohmann::json& config) {
  const auto ptr = nlohmann::json::json_pointer("/kernel/timing_only");
  return config.is_object() && config.contains(ptr) && config.at(ptr).is_boolean() && config.at(ptr).get<bool>();
}

std::unique_ptr<Device> open_from(const ConfigOptions& options, bool* timing_only) {
  nlohmann::json config = options.load();
  if (timing_only) *timing_only = is_timing_only(config);
  try {
    return open_device(config);
  } catch (const Error& e) {
    throw Error(e.code(), (options.path.empty() ? std::string("default config") : options.path) + ": " + e.what());
  }
}

void ShapeOptions::add_to(CLI::App& app) {
  options_.clear();
  auto keep = [&](const char* flag, const CLI::Option* option) { options_.emplace_back(flag, option); };
  keep("--batch", app.add_option("--batch,-b", batch, "Sequences in the batch")->check(CLI::Range(int64_t{1}, int64_t{1} << 20)));
  keep("--s-q", app.add_option("--s-q", s_q, "Query tokens per sequence (speculative / MTP decoding when > 1)")
                    ->check(CLI::Range(int64_t{1}, int64_t{1024})));
  keep("--heads", app.add_option("--heads", heads, "Query heads h_q")->check(CLI::Range(int64_t{1}, int64_t{4096})));
  keep("--kv-heads",
       app.add_option("--kv-heads", kv_heads, "Latent KV heads h_kv")->check(CLI::Range(int64_t{1}, int64_t{4096})));
  keep("--seqlen", app.add_option("--seqlen", seqlen, "Tokens in each sequence's cache (the mean with --varlen)")
                       ->check(CLI::Range(int64_t{0}, int64_t{1} << 24)));
  keep("--varlen", app.add_flag("--varlen", varlen, "Lengths drawn from max(Normal(seqlen, seqlen/2), s_q)"));
  keep("--causal", app.add_flag("--causal", causal, "Causal mask among the s_q query tokens"));
  keep("--page-size",
       app.add_option("--page-size", page_size, "Tokens per KV block")->check(CLI::Range(int64_t{1}, int64_t{1} << 20)));
  keep("--dtype", app.add_option("--dtype", dtype, "q / kv / out dtype")->check(CLI::IsMember({"bf16", "fp16", "fp32"})));
  keep("--kv-format", app.add_option("--kv-format", kv_format, kv_format_help())
                          ->check(kv_format_validator()));
  keep("--variant", app.add_option("--variant", variant,
                                   "latent (attention over the latent cache with an absorbed query q) or absorb "
                                   "(q_nope, q_rope and the up-projections w_uk, w_uv applied inside)")
                        ->check(CLI::IsMember({"latent", "absorb"})));
  keep("--softmax-scale", app.add_option("--softmax-scale", softmax_scale,
                                         "Softmax scale (0: 1/sqrt(d_qk), or 1/sqrt(d_nope+d_r) for absorb)"));
  keep("--seed", app.add_option("--seed", seed, "Seed of the random inputs"));
  keep("--kv-outliers", app.add_option("--kv-outliers", kv_outliers,
                                       "Make this many KV channels (evenly spaced) 32x larger: an outlier-heavy cache, "
                                       "the hard case for per-tensor KV scales (docs/kv-formats.md)")
                            ->check(CLI::Range(0, 576)));
}

bool ShapeOptions::given(const std::string& flag) const {
  for (const auto& [name, option] : options_)
    if (name == flag) return option->count() > 0;
  return false;
}

std::vector<std::string> ShapeOptions::given_shape_flags() const {
  std::vector<std::string> out;
  for (const auto& [name, option] : options_)
    if (option->count() > 0 && name != "--variant" && name != "--causal" && name != "--softmax-scale")
      out.push_back(name);
  return out;
}

Problem ShapeOptions::problem() const {
  Problem p;
  p.variant = variant == "absorb" ? Variant::absorb : Variant::latent;
  p.batch = batch;
  p.s_q = s_q;
  p.h_q = heads;
  p.h_kv = kv_heads;
  p.page_size = page_size;
  p.causal = causal;
  p.softmax_scale = softmax_scale;
  p.dtype = *parse_dtype(dtype);
  p.kv_format = kv();
  // Validated before any memory is touched; make_random_inputs fills these two.
  p.num_blocks = 1;
  p.max_blocks_per_seq = 1;
  return p;
}

KvFormat ShapeOptions::kv() const {
  if (kv_format.empty()) return *plain_kv_format(*parse_dtype(dtype));
  return parse_kv_format_flag("--kv-format", kv_format);
}

CLI::Validator kv_format_validator() {
  return CLI::Validator(
      [](std::string& name) {
        // CLI11 puts the flag's name in front of this text.
        if (parse_kv_format(name)) return std::string();
        return "unknown KV format \"" + name + "\" (expected one of " + kv_format_names() + ")";
      },
      "FORMAT");
}

std::string kv_format_help() {
  // From the table, so a new format shows up here without touching the CLI.
  std::string text = "KV cache format (default: the plain format of --dtype):";
  for (const KvFormatTraits& t : kv_formats()) text += std::string("\n  ") + t.name + ": " + t.description;
  return text;
}

KvFormat parse_kv_format_flag(const std::string& flag, const std::string& name) {
  if (const std::optional<KvFormat> f = parse_kv_format(name)) return *f;
  fail(ErrorCode::invalid_argument,
       flag + ": unknown KV format \"" + name + "\" (expected one of " + kv_format_names() + ")");
}

InputSpec ShapeOptions::spec() const {
  InputSpec s;
  s.seqlen = seqlen;
  s.varlen = varlen;
  s.seed = seed;
  s.kv_outlier_channels = kv_outliers;
  return s;
}

std::string ShapeOptions::flags() const {
  std::ostringstream os;
  os << "--variant " << variant << " --batch " << batch << " --s-q " << s_q << " --heads " << heads << " --kv-heads "
     << kv_heads << " --seqlen " << seqlen << (varlen ? " --varlen" : "") << (causal ? " --causal" : "")
     << " --page-size " << page_size << " --dtype " << dtype;
  if (!kv_format.empty() && kv() != *plain_kv_format(*parse_dtype(dtype))) os << " --kv-format " << kv_format;
  if (softmax_scale != 0.0f) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(softmax_scale));  // round-trips a float
    os << " --softmax-scale " << buf;
  }
  if (kv_outliers) os << " --kv-outliers " << kv_outliers;
  os << " --seed " << seed;
  return os.str();
}

}  // namespace mla::cli
