// The scalar conversions of the KV formats (mla/kv_format.hpp), written once for the host and
// for CUDA device code: the host traits and the GPU write_kv kernel call these same functions,
// so a cache written on either side is the same bytes. Plain C math only (frexpf, ldexpf,
// nearbyintf in the default round-to-nearest-even mode), no library state.
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define MLA_KV_CODEC __host__ __device__ inline
#else
#define MLA_KV_CODEC inline
#endif

namespace mla::kv_codec {

MLA_KV_CODEC float fp8_e4m3_to_float(uint8_t bits) {
  const float sign = (bits & 0x80u) ? -1.0f : 1.0f;
  const int exp = (bits >> 3) & 0xf, mant = bits & 0x7;
  if (exp == 0xf && mant == 0x7) return NAN;
  if (exp == 0) return sign * ldexpf(static_cast<float>(mant), -9);  // subnormal: mant * 2^-9
  return sign * ldexpf(1.0f + static_cast<float>(mant) / 8.0f, exp - 7);
}

// Nearest even, saturating to +-448 (Inf included: e4m3 "fn" has no Inf), NaN kept.
MLA_KV_CODEC uint8_t float_to_fp8_e4m3(float value) {
  const uint8_t sign = signbit(value) ? 0x80u : 0x00u;
  if (isnan(value)) return static_cast<uint8_t>(sign | 0x7fu);
  const float a = fabsf(value);
  if (a >= 448.0f) return static_cast<uint8_t>(sign | 0x7eu);
  if (a < 0.015625f)  // below 2^-6: subnormal steps of 2^-9; 8 steps is 2^-6, the first normal
    return static_cast<uint8_t>(sign | static_cast<uint8_t>(nearbyintf(ldexpf(a, 9))));
  int e = 0;
  const float m = frexpf(a, &e);  // a = m * 2^e, m in [0.5, 1)
  int exp = e - 1;                // a = (2m) * 2^exp, 2m in [1, 2)
  int mant = static_cast<int>(nearbyintf((2.0f * m - 1.0f) * 8.0f));  // exact: 2m - 1 has 24 bits
  if (mant == 8) mant = 0, ++exp;
  return static_cast<uint8_t>(sign | ((exp + 7) << 3) | mant);
}

// Nearest even, saturating to +-127; NaN becomes 0.
MLA_KV_CODEC int8_t float_to_int8(float value) {
  if (isnan(value)) return 0;
  const float r = nearbyintf(value);
  return static_cast<int8_t>(r > 127.0f ? 127.0f : (r < -127.0f ? -127.0f : r));
}

// fp8_ds_mla: 2^ceil(log2(max(amax / 448, 1e-4))) from a group's largest finite magnitude.
MLA_KV_CODEC float ds_mla_group_scale(float amax) {
  const float x = fmaxf(amax / 448.0f, 1e-4f);
  int e = 0;
  const float m = frexpf(x, &e);  // x = m * 2^e, m in [0.5, 1): 2^e, or 2^(e-1) when x is a power of two
  return ldexpf(1.0f, m == 0.5f ? e - 1 : e);
}

}  // namespace mla::kv_codec
