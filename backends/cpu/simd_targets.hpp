// Which copy of the task kernel runs: the Highway kernel is compiled once per SIMD target
// (task_kernel_hwy.cpp) and one copy is picked at run time; the AVX-512 BF16 kernel sits
// beside it for CPUs that have avx512_bf16.
#pragma once

#include <string>
#include <vector>

#include "task_kernel.hpp"

namespace mla::cpu {

struct SimdKernel {
  std::string target;          // Highway's name in lower case: "avx3", "avx2", "sse4", "emu128", "neon", "sve", ...
  TaskKernel run = nullptr;    // null when that target was not compiled in or this CPU cannot run it
};

// Highway's pick for this CPU: the best compiled target the CPU supports. Honours
// hwy::SetSupportedTargetsForTest, which is how tests run every target on one machine.
SimdKernel best_simd_kernel();
// The copy for one target by name (see SimdKernel::target).
SimdKernel simd_kernel_for(const std::string& target);
// The fallback that runs on any CPU of this architecture (emu128 on x86-64).
SimdKernel portable_simd_kernel();
// Every compiled target this CPU can run, best first.
std::vector<std::string> runnable_simd_targets();
// The names cpu.isa accepts for Highway targets on any architecture.
const std::vector<std::string>& simd_target_names();

bool cpu_has_avx512_bf16();
// True when Highway's pick uses 512-bit x86 vectors (AVX3 or better): the AVX-512 BF16 kernel
// then replaces it where the CPU also has avx512_bf16; a forced lower target keeps Highway.
bool best_simd_target_is_avx512();

}  // namespace mla::cpu
