#include "hopper_family.hpp"

#include "../hopper/hopper_launch.hpp"
#include "../portable/portable_launch.hpp"
#include "mla/error.hpp"

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

void HopperFamilyVariant::launch_scheduler(const LaunchChoice& c, const ScheduleInputs& in,
                                           const portable::ScheduleLayout& layout, cudaStream_t stream) const {
  hopper::launch_scheduler(in.cache_seqlens, in.batch, in.capacity_tokens, c.pieces, layout, stream);
}

LaunchChoice HopperFamilyVariant::base_choice(const Problem& p, const DeviceInfo& device, int ctas_per_sm,
                                              size_t smem_bytes, int threads, const char* kernel) const {
  if (ctas_per_sm < 1)
    fail(ErrorCode::unsupported, std::string("cuda: the ") + kernel + " does not fit on " + device.describe() + " (" +
                                     std::to_string(smem_bytes) + " bytes of shared memory)");
  LaunchChoice c;
  c.variant = this;
  c.elem = p.dtype == DType::bf16 ? portable::Elem::bf16 : portable::Elem::fp16;
  c.kv_format = p.kv_format;
  c.stages = 2;
  c.threads = threads;
  c.ctas_per_sm = ctas_per_sm;
  return c;
}

std::string HopperFamilyVariant::schedule_text(const LaunchChoice& c, const std::string& per_piece) {
  return "device-side contiguous split-KV schedule: the (sequence, 64-key block) list cut into " +
         std::to_string(c.pieces) + " pieces of equal cost (blocks + 5 per split), " + per_piece + "; at most " +
         std::to_string(c.max_splits) + " splits";
}

}  // namespace mla::cuda
