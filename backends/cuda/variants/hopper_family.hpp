// What both sm_90a kernels (hopper/ and hopper_narrow/) need of a problem and a device, as one
// refusal function their table entries share.
#pragma once

#include <string>

#include "../device_info.hpp"
#include "mla/problem.hpp"

namespace mla::cuda {

// Why neither Hopper kernel can run `p` on `device` ("" when the shape is theirs): sm_90, bf16 or
// fp16 queries, 64-token pages, one latent KV head, the scheduler's batch limit, d_qk 576 / d_v 512.
std::string hopper_family_refusal(const Problem& p, const DeviceInfo& device);

}  // namespace mla::cuda
