// Operator inputs and outputs as safetensors files (tensor names as in DESIGN 2.1 / 2.2).
#pragma once

#include <string>

#include "mla/inputs.hpp"

namespace mla::cli {

// Reads q, kv_cache, block_table, cache_seqlens (latent) or q_nope, q_rope, w_uk, w_uv,
// kv_cache, block_table, cache_seqlens (absorb). The problem comes from the tensor shapes;
// variant, causal and softmax_scale from `base`. Outputs are allocated and poisoned.
HostInputs load_inputs(const std::string& path, const Problem& base);
void save_inputs(const std::string& path, const HostInputs& inputs);
void save_outputs(const std::string& path, const HostInputs& inputs);

}  // namespace mla::cli
