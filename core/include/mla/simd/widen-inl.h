// 16-bit (bf16, fp16) or fp32 elements, and KV-cache tokens of every format (mla/kv_format.hpp),
// to fp32 over Highway, for the SIMD kernels of the host backends (the cpu task kernel,
// sim_tpu's tile math), so both widen and dequantize with one piece of code. The scalar traits
// in kv_format.cpp are the definition; these must give the same floats.
// A Highway "-inl" header: include it inside a translation unit that is compiled once per
// target by hwy/foreach_target.h (after hwy/highway.h); each pass defines
// mla::HWY_NAMESPACE::widen_to_f32 for that target. Not installed: it needs Highway.
#if defined(MLA_SIMD_WIDEN_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef MLA_SIMD_WIDEN_INL_H_
#undef MLA_SIMD_WIDEN_INL_H_
#else
#define MLA_SIMD_WIDEN_INL_H_
#endif

#include <hwy/highway.h>

#include <cstdint>
#include <cstring>
#include <limits>

#include "mla/dtype.hpp"
#include "mla/half.hpp"
#include "mla/kv_format.hpp"

HWY_BEFORE_NAMESPACE();
namespace mla::HWY_NAMESPACE {

// `count` elements of `dtype` at `src` to fp32 at `dst`: whole vectors through Highway, the
// tail with the scalar conversions of mla/half.hpp.
inline void widen_to_f32(const void* src, DType dtype, int64_t count, float* HWY_RESTRICT dst) {
  namespace hn = hwy::HWY_NAMESPACE;
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t whole = count - count % N;  // whole vectors; the scalar tail has fewer than N
  int64_t i = 0;
  if (dtype == DType::bf16) {
    const hn::Rebind<hwy::bfloat16_t, decltype(df)> dh;
    const auto* s = static_cast<const hwy::bfloat16_t*>(src);
    for (; i < whole; i += N) hn::StoreU(hn::PromoteTo(df, hn::LoadU(dh, s + i)), df, dst + i);
    const auto* bits = static_cast<const uint16_t*>(src);
    for (; i < count; ++i) dst[i] = bf16_to_float(bits[i]);
  } else if (dtype == DType::fp16) {
    const hn::Rebind<hwy::float16_t, decltype(df)> dh;
    const auto* s = static_cast<const hwy::float16_t*>(src);
    for (; i < whole; i += N) hn::StoreU(hn::PromoteTo(df, hn::LoadU(dh, s + i)), df, dst + i);
    const auto* bits = static_cast<const uint16_t*>(src);
    for (; i < count; ++i) dst[i] = fp16_to_float(bits[i]);
  } else {
    std::memcpy(dst, src, static_cast<size_t>(count) * sizeof(float));
  }
}

// `count` fp8 e4m3 bytes to fp32, times `scale`. A normal fp8's magnitude bits shifted into an
// fp32's exponent/mantissa, with the exponent rebiased (+120), are exactly its value; the eight
// subnormal codes are small integers times 2^-9. No fp32 subnormal is made, so a DAZ/FTZ
// floating-point mode cannot change the result.
inline void fp8_e4m3_to_f32(const uint8_t* HWY_RESTRICT src, int64_t count, float scale, float* HWY_RESTRICT dst) {
  namespace hn = hwy::HWY_NAMESPACE;
  const hn::ScalableTag<float> df;
  const hn::RebindToUnsigned<decltype(df)> du;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint8_t, decltype(df)> d8;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t whole = count - count % N;  // whole vectors; the scalar tail has fewer than N
  const auto k7f = hn::Set(du, 0x7fu), k80 = hn::Set(du, 0x80u), k8 = hn::Set(du, 8u);
  const auto rebias = hn::Set(du, 120u << 23);
  const auto sub_step = hn::Set(df, 0x1p-9f), vscale = hn::Set(df, scale);
  const auto nan = hn::Set(df, std::numeric_limits<float>::quiet_NaN());
  int64_t i = 0;
  for (; i < whole; i += N) {
    const auto b = hn::PromoteTo(du, hn::LoadU(d8, src + i));
    const auto mag = hn::And(b, k7f);
    const auto normal = hn::BitCast(df, hn::Add(hn::ShiftLeft<20>(mag), rebias));
    const auto subnormal = hn::Mul(hn::ConvertTo(df, hn::BitCast(di, mag)), sub_step);
    auto f = hn::Mul(hn::IfThenElse(hn::RebindMask(df, hn::Lt(hn::BitCast(di, mag), hn::BitCast(di, k8))), subnormal, normal), vscale);
    f = hn::BitCast(df, hn::Xor(hn::BitCast(du, f), hn::ShiftLeft<24>(hn::And(b, k80))));
    f = hn::IfThenElse(hn::RebindMask(df, hn::Eq(mag, k7f)), nan, f);
    hn::StoreU(f, df, dst + i);
  }
  for (; i < count; ++i) dst[i] = fp8_e4m3_to_float(src[i]) * scale;
}

// `count` int8 codes to fp32, times scale[c] (or not, when `scale` is null).
inline void int8_to_f32(const int8_t* HWY_RESTRICT src, int64_t count, const float* HWY_RESTRICT scale,
                        float* HWY_RESTRICT dst) {
  namespace hn = hwy::HWY_NAMESPACE;
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<int8_t, decltype(df)> d8;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t whole = count - count % N;  // whole vectors; the scalar tail has fewer than N
  int64_t i = 0;
  for (; i < whole; i += N) {
    auto f = hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8, src + i)));
    if (scale) f = hn::Mul(f, hn::LoadU(df, scale + i));
    hn::StoreU(f, df, dst + i);
  }
  for (; i < count; ++i) dst[i] = static_cast<float>(src[i]) * (scale ? scale[i] : 1.0f);
}

// One KV token of `format` (d_c + d_r values) to fp32. With `apply_scales` false the
// per-tensor / per-channel kv_scale is left out (a caller that folded it into q and out);
// fp8_ds_mla's in-token scales are always applied.
inline void dequantize_token_f32(const void* token, KvFormat format, const float* kv_scale, int64_t d_c, int64_t d_r,
                                 bool apply_scales, float* HWY_RESTRICT dst) {
  const auto* bytes = static_cast<const uint8_t*>(token);
  switch (format) {
    case KvFormat::bf16: widen_to_f32(token, DType::bf16, d_c + d_r, dst); return;
    case KvFormat::fp16: widen_to_f32(token, DType::fp16, d_c + d_r, dst); return;
    case KvFormat::fp32: widen_to_f32(token, DType::fp32, d_c + d_r, dst); return;
    case KvFormat::fp8_e4m3: fp8_e4m3_to_f32(bytes, d_c + d_r, apply_scales ? kv_scale[0] : 1.0f, dst); return;
    case KvFormat::int8:
      int8_to_f32(static_cast<const int8_t*>(token), d_c + d_r, apply_scales ? kv_scale : nullptr, dst);
      return;
    case KvFormat::fp8_ds_mla: {
      const int64_t groups = d_c / kKvScaleGroup;
      for (int64_t g = 0; g < groups; ++g) {
        float scale;
        std::memcpy(&scale, bytes + d_c + 4 * g, sizeof scale);
        fp8_e4m3_to_f32(bytes + g * kKvScaleGroup, kKvScaleGroup, scale, dst + g * kKvScaleGroup);
      }
      widen_to_f32(bytes + d_c + 4 * groups, DType::bf16, d_r, dst + d_c);
      return;
    }
  }
}

}  // namespace mla::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // MLA_SIMD_WIDEN_INL_H_
