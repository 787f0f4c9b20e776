// The per-row rules of the context-parallel merge (mla/context_parallel.hpp), written once for
// the host merge and the GPU merge kernels, both exchange forms, so their edge cases cannot
// drift apart:
//   - lse +inf marks a rank that saw no key of the row (the operator's empty result): it weighs
//     nothing and adds nothing, whatever its out holds;
//   - a NaN lse makes the row NaN (out NaN, lse NaN);
//   - a row no rank saw stays out 0, lse +inf.
// A row is merged as: mx = max over ranks of max_key(lse_r); w_r = weight(lse_r, mx);
// sum_w = sum of w_r; row_kind(sum_w) says which of the three cases it is; a merged row's out is
// sum of scaled(w_r, out_r) / sum_w, the others' unmerged_out(kind); lse = row_lse(kind, mx,
// sum_w). Plain C math, fp32.
#pragma once

#include <math.h>

#if defined(__CUDACC__)
#define MLA_MERGE_RULE __host__ __device__ inline
#else
#define MLA_MERGE_RULE inline
#endif

namespace mla::merge_rules {

// What a rank puts into the row max: its lse, or -inf for a rank that saw nothing (+inf) and
// for NaN (a max reduction follows fmax and would drop it; the NaN travels through weight()).
MLA_MERGE_RULE float max_key(float lse) { return lse == INFINITY || lse != lse ? -INFINITY : lse; }

// A rank's weight against the row max: 0 for an infinite lse (+inf: saw nothing; -inf: no
// mass), NaN for a NaN lse, else exp(lse - mx) in (0, 1].
MLA_MERGE_RULE float weight(float lse, float mx) { return lse == INFINITY || lse == -INFINITY ? 0.f : expf(lse - mx); }

// A rank's share of one output element: exactly 0 when it weighs nothing (so a rank without
// keys adds nothing even where its out is not 0).
MLA_MERGE_RULE float scaled(float w, float x) { return w == 0.f ? 0.f : w * x; }

enum class RowKind { merged, empty, nan };
// From the sum of the ranks' weights: NaN (some lse was NaN), 0 (no rank saw a key), or >= 1.
MLA_MERGE_RULE RowKind row_kind(float sum_w) {
  return sum_w != sum_w ? RowKind::nan : sum_w == 0.f ? RowKind::empty : RowKind::merged;
}
// The lse of a row: logsumexp of the ranks' for a merged row, +inf for an empty one, or NaN.
MLA_MERGE_RULE float row_lse(RowKind kind, float mx, float sum_w) {
  return kind == RowKind::merged ? mx + logf(sum_w) : kind == RowKind::empty ? INFINITY : NAN;
}
// Every out element of a row that is not merged: 0 (empty) or NaN.
MLA_MERGE_RULE float unmerged_out(RowKind kind) { return kind == RowKind::nan ? NAN : 0.f; }

}  // namespace mla::merge_rules
