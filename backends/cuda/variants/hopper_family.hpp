// What both sm_90a kernels (hopper/ and hopper_narrow/) share as table entries: the shape checks
// of a problem and a device, the contiguous device-side schedule (hopper/hopper_scheduler.cu)
// with its static CTA assignment, and the launch-choice fields they fill alike.
#pragma once

#include <cstddef>
#include <string>

#include "../device_info.hpp"
#include "kernel_variant.hpp"
#include "mla/problem.hpp"

namespace mla::cuda {

// Why neither Hopper kernel can run `p` on `device` ("" when the shape is theirs): sm_90, bf16 or
// fp16 queries, 64-token pages, one latent KV head, the scheduler's batch limit, d_qk 576 / d_v 512.
std::string hopper_family_refusal(const Problem& p, const DeviceInfo& device);

class HopperFamilyVariant : public KernelVariant {
 public:
  void launch_scheduler(const LaunchChoice& c, const ScheduleInputs& in, const portable::ScheduleLayout& layout,
                        cudaStream_t stream) const final;
  // The CTAs' assignment is static (no work counter to reset), and on sm_90 the combine's launch
  // may overlap the decode kernel's tail.
  [[nodiscard]] bool programmatic_combine() const final { return true; }

 protected:
  // The fields every sm_90a choice sets the same way (the variant, the types, two stages, the CTA
  // size and residency); Error(unsupported) naming `kernel` when not one CTA of `smem_bytes` fits.
  LaunchChoice base_choice(const Problem& p, const DeviceInfo& device, int ctas_per_sm, size_t smem_bytes,
                           int threads, const char* kernel) const;
  // describe_schedule's text; `per_piece` says which CTAs run a piece.
  static std::string schedule_text(const LaunchChoice& c, const std::string& per_piece);
};

}  // namespace mla::cuda
