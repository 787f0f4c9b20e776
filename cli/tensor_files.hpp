// Operator inputs and outputs as safetensors files. An inputs file carries the tensors and,
// in its "__metadata__", what the tensors cannot say (variant, causal, softmax scale, d_r), so
// `mla run --save-inputs F` then `mla run --inputs F` replays the same problem.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

#include "mla/inputs.hpp"
#include "options.hpp"

namespace mla::cli {

// Reads the inputs of kRunOperands the variant uses: q, kv_cache, block_table, cache_seqlens
// (latent) or q_nope, q_rope, w_uk, w_uv, kv_cache, block_table, cache_seqlens (absorb), plus
// kv_scale when the KV format has one. The kv_cache's dtype names the format (F8_E4M3:
// fp8_e4m3, U8 [.., 656]: fp8_ds_mla, I8: int8, else the plain float formats); a missing or
// mis-shaped kv_scale is an error naming it. The shapes come from the tensors; variant,
// causal, softmax scale and d_r from the file's metadata, or from `shape`'s flags for a file
// without it. Refused (Error(invalid_argument)): shape flags (--batch, --dtype, ...) given with
// an inputs file, and --variant / --causal / --softmax-scale that contradict its metadata.
// The file's tensors may take at most `max_bytes`. Outputs are allocated and poisoned.
HostInputs load_inputs(const std::string& path, const ShapeOptions& shape, uint64_t max_bytes);
// Every input operand that is defined (kv_scale included), the quantized cache's bf16 values as
// "kv_unquantized" when known, and the metadata.
void save_inputs(std::ostream& out, const HostInputs& inputs);
void save_outputs(std::ostream& out, const HostInputs& inputs);

}  // namespace mla::cli
