#include "quantization_check.hpp"

namespace mla::cli {

std::optional<ReferenceOutput> unquantized_reference(const HostInputs& in) {
  if (!is_quantized(in.problem.kv_format) || !in.kv_unquantized.defined()) return std::nullopt;
  const HostInputs bf16 = in.unquantized();
  return reference_decode(bf16.problem, bf16.args());
}

Comparison quantization_error(const HostInputs& in, const ReferenceOutput& baseline, const TensorView& out,
                              const TensorView& lse) {
  return compare_to_reference(in.problem, baseline, out, lse, quantization_tolerance(in.problem));
}

}  // namespace mla::cli
