// How far a backend's output is from the reference, with the metrics DESIGN 7 names.
#pragma once

#include <cstdint>
#include <string>

#include "mla/problem.hpp"
#include "mla/reference.hpp"

namespace mla {

struct Tolerance {
  double rel_l2;   // on out, over the whole tensor
  double max_abs;  // on out, per element: catches a few wrong elements that rel_l2 averages away
  double lse_abs;  // on finite lse entries
};
Tolerance tolerance_for(DType dtype);
// The looser bound on how far a quantized cache's result may be from the same problem run on
// the unquantized (bf16) values: the format's quantization_tolerance on rel L2 (mla/kv_format.hpp).
Tolerance quantization_tolerance(const Problem& problem);

struct Comparison {
  double max_abs_error = 0;
  double rel_l2_error = 0;
  double cosine_distance = 0;
  double lse_max_abs_error = 0;
  int64_t nonfinite_mismatches = 0;  // positions where exactly one side is NaN/Inf (out and lse)
  int64_t unwritten = 0;             // NaN outputs where the reference has none (poison left)
  double zero_fraction = 0;          // share of exactly-zero outputs where the reference is not
  bool trustworthy = true;           // false when the output is mostly zeros
  bool passed = false;
  Tolerance tolerance{};
  [[nodiscard]] std::string summary() const;  // one line
};

// `out` and `lse` are host tensors of the backend's result.
Comparison compare_to_reference(const Problem& problem, const ReferenceOutput& ref, const TensorView& out,
                                const TensorView& lse);
// The same metrics against an explicit tolerance.
Comparison compare_to_reference(const Problem& problem, const ReferenceOutput& ref, const TensorView& out,
                                const TensorView& lse, const Tolerance& tolerance);

}  // namespace mla
