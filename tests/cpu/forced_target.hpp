// Makes Highway pick one SIMD target (hwy::SetSupportedTargetsForTest) for the life of the
// object, and restores its own choice when a test ends, also when it fails.
#pragma once

#include <cstdint>

#include <hwy/targets.h>

namespace mla::testing {

struct ForcedTarget {
  explicit ForcedTarget(int64_t target) { hwy::SetSupportedTargetsForTest(target); }
  ~ForcedTarget() { hwy::SetSupportedTargetsForTest(0); }
  ForcedTarget(const ForcedTarget&) = delete;
  ForcedTarget& operator=(const ForcedTarget&) = delete;
};

}  // namespace mla::testing
