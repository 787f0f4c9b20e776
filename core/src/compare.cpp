#include "mla/compare.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "mla/error.hpp"
#include "mla/host_tensor.hpp"

namespace mla {

Tolerance tolerance_for(DType dtype) {
  switch (dtype) {
    // Outputs are convex combinations of N(0,1) values: |out| stays O(1), so absolute
    // bounds at a few dozen output ulps are meaningful.
    case DType::bf16: return {1e-2, 4e-2, 2e-2};
    case DType::fp16: return {3e-3, 8e-3, 5e-3};
    default: return {1e-4, 2e-4, 1e-4};
  }
}

Tolerance quantization_tolerance(const Problem& p) {
  const double rel = p.kv().quantization_tolerance;
  const Tolerance base = tolerance_for(p.dtype);
  // Per element and on lse, quantization moves values by a few of the format's steps: the
  // same multiple of rel L2 as the bf16 tolerance allows over its own rel L2. bf16's ratios,
  // whatever the output dtype: the cache's rounding does not shrink with a wider output (with
  // fp32's tighter ratios an absorb case of the full compare set failed at rel L2 0.03).
  const Tolerance ratio = tolerance_for(DType::bf16);
  return {std::max(rel, base.rel_l2), std::max(base.max_abs, ratio.max_abs * rel / ratio.rel_l2),
          std::max(base.lse_abs, ratio.lse_abs * rel / ratio.rel_l2)};
}

namespace {
// NaN, +Inf, -Inf and finite are four classes; the contract is that they match position by
// position. A NaN where the reference has none may also be the poison a run never overwrote.
int nonfinite_class(double x) { return std::isnan(x) ? 3 : std::isinf(x) ? (x > 0 ? 1 : 2) : 0; }

int64_t strided_offset(const TensorView& t, int64_t flat) {
  int64_t off = 0;
  for (int d = t.rank - 1; d >= 0; --d) {
    off += (flat % t.shape[d]) * t.strides[d];
    flat /= t.shape[d];
  }
  return off;
}
}  // namespace

Comparison compare_to_reference(const Problem& p, const ReferenceOutput& ref, const TensorView& out, const TensorView& lse) {
  return compare_to_reference(p, ref, out, lse, tolerance_for(p.dtype));
}

Comparison compare_to_reference(const Problem& p, const ReferenceOutput& ref, const TensorView& out, const TensorView& lse,
                                const Tolerance& tolerance) {
  if (out.space != MemorySpace::host || lse.space != MemorySpace::host)
    fail(ErrorCode::invalid_argument, "compare_to_reference: out and lse must be host tensors");
  if (out.numel() != static_cast<int64_t>(ref.out.size()) || lse.numel() != static_cast<int64_t>(ref.lse.size()))
    fail(ErrorCode::invalid_argument, "compare_to_reference: out " + out.describe() + " / lse " + lse.describe() +
                                          " do not match the reference sizes");
  Comparison c;
  c.tolerance = tolerance;
  double diff2 = 0, ref2 = 0, dot = 0, got2 = 0;
  int64_t zeros = 0, nonzero_ref = 0;
  for (int64_t k = 0; k < out.numel(); ++k) {
    const double r = ref.out[static_cast<size_t>(k)];
    const double g = load_element(out.data, out.dtype, strided_offset(out, k));
    if (nonfinite_class(g) != nonfinite_class(r)) {
      ++c.nonfinite_mismatches;
      if (std::isnan(g)) ++c.unwritten;
      continue;
    }
    if (!std::isfinite(g)) continue;  // the same NaN or Inf as the reference: nothing to measure
    if (r != 0) {
      ++nonzero_ref;
      if (g == 0) ++zeros;
    }
    const double e = g - r;
    c.max_abs_error = std::max(c.max_abs_error, std::fabs(e));
    diff2 += e * e;
    ref2 += r * r;
    got2 += g * g;
    dot += g * r;
  }
  c.rel_l2_error = ref2 > 0 ? std::sqrt(diff2 / ref2) : std::sqrt(diff2);
  c.cosine_distance = (ref2 > 0 && got2 > 0) ? 1.0 - dot / std::sqrt(ref2 * got2) : (ref2 == got2 ? 0.0 : 1.0);
  c.zero_fraction = nonzero_ref ? static_cast<double>(zeros) / static_cast<double>(nonzero_ref) : 0.0;
  c.trustworthy = c.zero_fraction < 0.5;
  for (int64_t k = 0; k < lse.numel(); ++k) {
    const double r = ref.lse[static_cast<size_t>(k)];
    const double g = load_element(lse.data, lse.dtype, strided_offset(lse, k));
    if (nonfinite_class(g) != nonfinite_class(r)) {
      ++c.nonfinite_mismatches;
      if (std::isnan(g)) ++c.unwritten;
      continue;
    }
    if (std::isfinite(r)) c.lse_max_abs_error = std::max(c.lse_max_abs_error, std::fabs(g - r));
  }
  c.passed = c.nonfinite_mismatches == 0 && c.rel_l2_error <= c.tolerance.rel_l2 &&
             c.max_abs_error <= c.tolerance.max_abs &&
             c.lse_max_abs_error <= c.tolerance.lse_abs && c.trustworthy;
  return c;
}

std::string Comparison::summary() const {
  std::ostringstream os;
  os.precision(3);
  os << (passed ? "PASS" : "FAIL") << " max_abs=" << max_abs_error << " rel_l2=" << rel_l2_error
     << " cos_dist=" << cosine_distance << " lse_err=" << lse_max_abs_error
     << " nonfinite_mismatch=" << nonfinite_mismatches;
  if (unwritten) os << " unwritten=" << unwritten;
  if (!trustworthy) os << " MISTRUSTED(zero_fraction=" << zero_fraction << ")";
  os << " (tol rel_l2<=" << tolerance.rel_l2 << " max_abs<=" << tolerance.max_abs << " lse<=" << tolerance.lse_abs << ")";
  return os.str();
}

}  // namespace mla
