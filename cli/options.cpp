#include "options.hpp"

#include <cstdio>
#include <sstream>

#include "mla/error.hpp"

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
  if (timing_only) apply_override(config, "kernel.timing_only=true");
  if (!trace_file.empty()) config["trace_file"] = trace_file;
  return config;
}

std::unique_ptr<Device> open_from(const ConfigOptions& options) {
  nlohmann::json config = options.load();
  try {
    return open_device(config);
  } catch (const Error& e) {
    throw Error(e.code(), (options.path.empty() ? std::string("default config") : options.path) + ": " + e.what());
  }
}

void ShapeOptions::add_to(CLI::App& app) {
  app.add_option("--batch,-b", batch, "Sequences in the batch")->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--s-q", s_q, "Query tokens per sequence (speculative / MTP decoding when > 1)")
      ->check(CLI::Range(int64_t{1}, int64_t{1024}));
  app.add_option("--heads", heads, "Query heads h_q")->check(CLI::Range(int64_t{1}, int64_t{4096}));
  app.add_option("--kv-heads", kv_heads, "Latent KV heads h_kv")->check(CLI::Range(int64_t{1}, int64_t{4096}));
  app.add_option("--seqlen", seqlen, "Tokens in each sequence's cache (the mean with --varlen)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
  app.add_flag("--varlen", varlen, "Lengths drawn from max(Normal(seqlen, seqlen/2), s_q)");
  app.add_flag("--causal", causal, "Causal mask among the s_q query tokens");
  app.add_option("--page-size", page_size, "Tokens per KV block")->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--dtype", dtype, "q / kv / out dtype")->check(CLI::IsMember({"bf16", "fp16", "fp32"}));
  app.add_option("--variant", variant, "latent (DESIGN 2.1) or absorb (2.2)")->check(CLI::IsMember({"latent", "absorb"}));
  app.add_option("--softmax-scale", softmax_scale, "Softmax scale (0: 1/sqrt(d_qk), or 1/sqrt(d_nope+d_r) for absorb)");
  app.add_option("--seed", seed, "Seed of the random inputs");
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
  p.kv.dtype = p.dtype;
  // Validated before any memory is touched; make_random_inputs fills these two.
  p.num_blocks = 1;
  p.max_blocks_per_seq = 1;
  return p;
}

InputSpec ShapeOptions::spec() const {
  InputSpec s;
  s.seqlen = seqlen;
  s.varlen = varlen;
  s.seed = seed;
  return s;
}

std::string ShapeOptions::flags() const {
  std::ostringstream os;
  os << "--variant " << variant << " --batch " << batch << " --s-q " << s_q << " --heads " << heads << " --kv-heads "
     << kv_heads << " --seqlen " << seqlen << (varlen ? " --varlen" : "") << (causal ? " --causal" : "")
     << " --page-size " << page_size << " --dtype " << dtype;
  if (softmax_scale != 0.0f) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(softmax_scale));  // round-trips a float
    os << " --softmax-scale " << buf;
  }
  os << " --seed " << seed;
  return os.str();
}

}  // namespace mla::cli
