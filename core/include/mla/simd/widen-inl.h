// 16-bit (bf16, fp16) or fp32 elements to fp32, over Highway, for the SIMD kernels of the host
// backends (the cpu task kernel, sim_tpu's tile math), so both widen with one piece of code.
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

#include "mla/dtype.hpp"
#include "mla/half.hpp"

HWY_BEFORE_NAMESPACE();
namespace mla::HWY_NAMESPACE {

// `count` elements of `dtype` at `src` to fp32 at `dst`: whole vectors through Highway, the
// tail with the scalar conversions of mla/half.hpp.
inline void widen_to_f32(const void* src, DType dtype, int64_t count, float* HWY_RESTRICT dst) {
  namespace hn = hwy::HWY_NAMESPACE;
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  int64_t i = 0;
  if (dtype == DType::bf16) {
    const hn::Rebind<hwy::bfloat16_t, decltype(df)> dh;
    const auto* s = static_cast<const hwy::bfloat16_t*>(src);
    for (; i + N <= count; i += N) hn::StoreU(hn::PromoteTo(df, hn::LoadU(dh, s + i)), df, dst + i);
    const auto* bits = static_cast<const uint16_t*>(src);
    for (; i < count; ++i) dst[i] = bf16_to_float(bits[i]);
  } else if (dtype == DType::fp16) {
    const hn::Rebind<hwy::float16_t, decltype(df)> dh;
    const auto* s = static_cast<const hwy::float16_t*>(src);
    for (; i + N <= count; i += N) hn::StoreU(hn::PromoteTo(df, hn::LoadU(dh, s + i)), df, dst + i);
    const auto* bits = static_cast<const uint16_t*>(src);
    for (; i < count; ++i) dst[i] = fp16_to_float(bits[i]);
  } else {
    std::memcpy(dst, src, static_cast<size_t>(count) * sizeof(float));
  }
}

}  // namespace mla::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // MLA_SIMD_WIDEN_INL_H_
