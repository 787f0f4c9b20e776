// The second check of a quantized KV cache: its result against the same problem run on the
// bf16 values the cache was quantized from. The first check (against the reference on the
// dequantized values) says the kernel is right; this one says the quantizer is, and what the
// format costs in accuracy. It has its own, looser tolerance per format.
#pragma once

#include <optional>

#include "mla/compare.hpp"
#include "mla/inputs.hpp"
#include "mla/reference.hpp"

namespace mla::cli {

// The reference on in.unquantized(): the baseline of the quantization error. nullopt for a
// plain format, or a quantized cache whose bf16 values are not known (a file without them).
std::optional<ReferenceOutput> unquantized_reference(const HostInputs& in);

// `out` / `lse` (host, the backend's result on `in`) against `baseline` with
// quantization_tolerance(in.problem).
Comparison quantization_error(const HostInputs& in, const ReferenceOutput& baseline, const TensorView& out,
                              const TensorView& lse);

}  // namespace mla::cli
