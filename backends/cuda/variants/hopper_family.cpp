#include "hopper_family.hpp"

#include "../hopper/hopper_launch.hpp"
#include "../portable/portable_launch.hpp"

namespace mla::cuda {

std::string hopper_family_refusal(const Problem& p, const DeviceInfo& device) {
  if (device.prop.major != 9 || device.prop.minor != 0)
    return "the device is sm_" + std::to_string(device.prop.major) + std::to_string(device.prop.minor) +
           ", the kernel is built for sm_90a only";
  if (p.dtype != DType::bf16 && p.dtype != DType::fp16)
    return std::string("dtype ") + dtype_name(p.dtype) + " (the kernel reads bf16 or fp16)";
  if (p.page_size != hopper::block_keys())
    return "page size " + std::to_string(p.page_size) + " (the kernel loads whole 64-token pages by TMA)";
  if (p.h_kv != 1) return "h_kv = " + std::to_string(p.h_kv) + " (the kernel handles one latent KV head)";
  if (p.batch > hopper::max_batch())
    return "batch " + std::to_string(p.batch) + " > " + std::to_string(hopper::max_batch()) +
           " (its scheduler walks the batch serially)";
  if (p.d_qk() != portable::kDqk || p.d_v() != portable::kDv) return "d_qk / d_v are not 576 / 512";
  return "";
}

}  // namespace mla::cuda
