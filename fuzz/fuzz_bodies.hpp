// What each fuzz target does with one input, shared by the libFuzzer entry points
// (fuzz_*.cpp) and by the regression test that replays saved inputs under the normal build
// (tests/robustness/fuzz_regressions.cpp). The contract being fuzzed: malformed input is
// answered with mla::Error, never a crash, another exception type, or undefined behaviour.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "mla/error.hpp"
#include "mla/inputs.hpp"
#include "mla/registry.hpp"
#include "mla/safetensors.hpp"
#include "mla/validate.hpp"

namespace mla::fuzz {

// A device config as JSON text: the schema check, then opening the device and planning one
// small problem (a config's values steer the plan: tiles, partitions, memory sizes). Nothing
// is run, so a fuzzed config cannot make the input take minutes (a huge modelled topology).
inline void config_one(const std::string& text) {
  nlohmann::json config = nlohmann::json::parse(text, nullptr, false);
  if (config.is_discarded()) return;  // nlohmann's own parser is not what is under test
  (void)validate_config(config);      // collects problems; must not throw at all
  try {
    auto device = open_device(config);
    Problem p;
    p.batch = 2;
    p.h_q = 16;
    p.page_size = 16;
    p.num_blocks = 8;
    p.max_blocks_per_seq = 4;
    (void)device->plan(p);
  } catch (const Error&) {
    // invalid_config, backend_unavailable, unsupported, out_of_memory: all answers, not bugs
  }
}

// A safetensors file as bytes: parsed, then taken through the checks `mla run --inputs`
// applies before any kernel touches the tensors (tensor_files.cpp does the same).
inline void safetensors_one(const std::string& bytes) {
  try {
    TensorMap tensors = parse_safetensors(bytes, "fuzz input");
    auto get = [&](const char* name) {
      auto it = tensors.find(name);
      return it == tensors.end() ? TensorView{} : it->second.view();
    };
    RunArgs args;
    Problem base;
    base.variant = tensors.count("q_nope") ? Variant::absorb : Variant::latent;
    if (base.variant == Variant::latent) {
      args.q = get("q");
    } else {
      args.q_nope = get("q_nope");
      args.q_rope = get("q_rope");
      args.w_uk = get("w_uk");
      args.w_uv = get("w_uv");
    }
    args.kv_cache = get("kv_cache");
    args.block_table = get("block_table");
    args.cache_seqlens = get("cache_seqlens");
    Problem p = infer_problem_from_tensors(base, args);
    validate_problem(p);
    // Outputs are not allocated: their size is a product of extents from different tensors,
    // so a small file could ask for gigabytes. Views with the right shapes over a dummy
    // (aligned, never dereferenced) pointer let validate_args check the inputs first.
    alignas(256) static char dummy[256];
    args.out = TensorView::contiguous(dummy, p.dtype, {p.batch, p.s_q, p.h_q, p.out_width()});
    args.lse = TensorView::contiguous(dummy, DType::fp32, {p.batch, p.h_q, p.s_q});
    validate_args(p, args, MemorySpace::host);
    validate_indices(p, args.cache_seqlens.as<const int32_t>(), args.block_table.as<const int32_t>(),
                     args.block_table.strides[0]);
  } catch (const Error&) {
  }
}

}  // namespace mla::fuzz
