// The per-target copies of the Highway task kernel as a table (task_kernel_hwy.cpp fills it),
// so a config can ask for one target by name instead of Highway's pick.
#pragma once

#include <cstdint>
#include <vector>

#include <hwy/highway.h>

#include "task_kernel.hpp"

// The target of HWY_CHOOSE_FALLBACK: emu128 when compiled, else scalar, else the baseline.
#if HWY_TARGETS & HWY_EMU128
#define MLA_HWY_FALLBACK_TARGET HWY_EMU128
#elif HWY_TARGETS & HWY_SCALAR
#define MLA_HWY_FALLBACK_TARGET HWY_SCALAR
#else
#define MLA_HWY_FALLBACK_TARGET HWY_STATIC_TARGET
#endif

namespace mla::cpu {

struct CompiledKernel {
  int64_t target;   // a HWY_* target bit
  TaskKernel run;
};

std::vector<CompiledKernel> compiled_task_kernels();
int64_t best_compiled_target();

}  // namespace mla::cpu
