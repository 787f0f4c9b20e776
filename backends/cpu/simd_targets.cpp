#include "simd_targets.hpp"

#include <algorithm>
#include <cctype>

#include <hwy/targets.h>

#include "simd_table.hpp"

namespace mla::cpu {

namespace {

std::string lower_name(int64_t target) {
  std::string name = hwy::TargetName(target);
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return name;
}

// The compiled copies this CPU can run (hwy::SupportedTargets honours SetSupportedTargetsForTest).
std::vector<CompiledKernel> runnable() {
  const int64_t supported = hwy::SupportedTargets();
  std::vector<CompiledKernel> out;
  for (const CompiledKernel& k : compiled_task_kernels())
    if (supported & k.target) out.push_back(k);
  return out;
}

}  // namespace

SimdKernel best_simd_kernel() {
  const int64_t best = best_compiled_target();
  for (const CompiledKernel& k : compiled_task_kernels())
    if (k.target == best) return {lower_name(k.target), k.run};
  // Highway's pick is always compiled; the fallback is here only to never return null.
  return portable_simd_kernel();
}

SimdKernel simd_kernel_for(const std::string& target) {
  for (const CompiledKernel& k : runnable())
    if (lower_name(k.target) == target) return {target, k.run};
  return {target, nullptr};
}

SimdKernel portable_simd_kernel() {
  const std::vector<CompiledKernel> all = compiled_task_kernels();
  return {lower_name(all.back().target), all.back().run};  // the fallback is listed last
}

std::vector<std::string> runnable_simd_targets() {
  std::vector<std::string> names;
  for (const CompiledKernel& k : runnable()) names.push_back(lower_name(k.target));
  return names;
}

const std::vector<std::string>& simd_target_names() {
  static const std::vector<std::string> names{"avx3_dl", "avx3", "avx2", "sse4", "ssse3", "sve2_128", "sve_256",
                                              "sve2", "sve", "neon", "emu128", "scalar"};
  return names;
}

bool cpu_has_avx512_bf16() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}

bool best_simd_target_is_avx512() {
#if HWY_ARCH_X86
  const int64_t best = best_compiled_target();
  return best == HWY_AVX3 || best == HWY_AVX3_DL;
#else
  return false;
#endif
}

}  // namespace mla::cpu
