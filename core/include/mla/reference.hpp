// The float64 reference of DESIGN 2.1 / 2.2: plain loops, every product and sum in double,
// reading only tokens < cache_seqlens and only the block ids they use. The yardstick for
// every backend; parallel over (sequence, KV head) with oneTBB so tests stay quick.
#pragma once

#include <vector>

#include "mla/problem.hpp"

namespace mla {

struct ReferenceOutput {
  std::vector<double> out;  // [b, s_q, h_q, out_width]
  std::vector<double> lse;  // [b, h_q, s_q]; +inf where nothing is attended
};

// Host tensors only. Validates args first.
ReferenceOutput reference_decode(const Problem& problem, const RunArgs& args);

}  // namespace mla
