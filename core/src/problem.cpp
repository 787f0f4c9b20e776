#include "mla/problem.hpp"

#include <cmath>
#include <sstream>

namespace mla {

const char* variant_name(Variant variant) { return variant == Variant::absorb ? "absorb" : "latent"; }

float Problem::effective_scale() const {
  if (softmax_scale != 0.0f) return softmax_scale;
  double width = variant == Variant::absorb ? static_cast<double>(d_nope + d_r) : static_cast<double>(d_qk());
  return static_cast<float>(1.0 / std::sqrt(width));
}

std::string Problem::describe() const {
  std::ostringstream os;
  os << variant_name(variant) << " b=" << batch << " s_q=" << s_q << " h_q=" << h_q << " h_kv=" << h_kv
     << " d_c=" << d_c << " d_r=" << d_r;
  if (variant == Variant::absorb) os << " d_nope=" << d_nope << " d_vh=" << d_vh;
  os << " page=" << page_size << " blocks=" << num_blocks << "x" << max_blocks_per_seq
     << " causal=" << (causal ? "on" : "off") << " dtype=" << dtype_name(dtype) << " kv=" << kv_format_name(kv_format);
  return os.str();
}

}  // namespace mla
