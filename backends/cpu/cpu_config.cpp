#include "cpu_config.hpp"

#include "simd_targets.hpp"

namespace mla::cpu {

CpuConfig parse_cpu_config(ConfigReader& root) {
  CpuConfig c;
  ConfigReader section = root.object("cpu");
  c.path = section.choice("path", c.path, {"fast", "reference"});
  c.threads = section.integer("threads", c.threads, 0, 4096);
  c.kv_tile_tokens = section.integer("kv_tile_tokens", c.kv_tile_tokens, 1, 1 << 16);
  std::vector<std::string> isas{"auto", "avx512_bf16", "portable"};
  for (const std::string& t : simd_target_names()) isas.push_back(t);
  c.isa = section.choice("isa", c.isa, isas);
  section.finish();
  return c;
}

}  // namespace mla::cpu
