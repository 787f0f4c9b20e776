#include "mla/metrics.hpp"

namespace mla {

double anchor_bytes(const Problem& p, double mean_len) {
  const double act = static_cast<double>(dtype_size(p.dtype));
  const double kv_token = static_cast<double>(kv_token_bytes(p.kv_format, p.d_c, p.d_r));
  const double b = static_cast<double>(p.batch), sh = static_cast<double>(p.s_q * p.h_q);
  double bytes = b * (sh * static_cast<double>(p.d_qk()) * act + mean_len * kv_token +
                      sh * static_cast<double>(p.d_v()) * act);
  if (p.variant == Variant::absorb)  // weights read once
    bytes += static_cast<double>(p.h_q) * static_cast<double>(p.d_c) * static_cast<double>(p.d_nope + p.d_vh) * act;
  return bytes;
}

double anchor_flops(const Problem& p, double mean_len) {
  const double rows = static_cast<double>(p.batch * p.h_q * p.s_q);
  double flops = rows * mean_len * 2.0 * static_cast<double>(p.d_qk() + p.d_v());
  if (p.variant == Variant::absorb) flops += rows * 2.0 * static_cast<double>(p.d_c) * static_cast<double>(p.d_nope + p.d_vh);
  return flops;
}

}  // namespace mla
