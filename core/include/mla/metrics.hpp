// Byte and FLOP counts with the conventions of ANCHORS.md, so every benchmark reports
// figures comparable to the anchors.
#pragma once

#include "mla/problem.hpp"

namespace mla {

// b*(s_q*h_q*d_qk*2 + mean_len*d_qk*2 + s_q*h_q*d_v*2) for bf16, element size scaled.
double anchor_bytes(const Problem& problem, double mean_seqlen);
// b*h_q*s_q*mean_len*2*(d_qk + d_v); absorb adds the two projections.
double anchor_flops(const Problem& problem, double mean_seqlen);

}  // namespace mla
