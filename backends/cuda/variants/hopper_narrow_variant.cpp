// The narrow Hopper kernel (sm_90a, hopper_narrow/) as a table entry: 8-bit caches (fp8_e4m3,
// int8, fp8_ds_mla) with at most 32 query rows per sequence (s_q x h_q), keys on the wgmma M
// dimension so those rows do not pay a 64-row tile's tensor work; the Hopper kernel's contiguous cost-balanced schedule,
// one CTA per piece (two CTAs of one warpgroup per SM up to 16 rows, one of two warpgroups up to 32).
#include <string>

#include "../hopper/hopper_launch.hpp"
#include "../hopper_narrow/narrow_launch.hpp"
#include "hopper_family.hpp"
#include "kernel_variant.hpp"

namespace mla::cuda {
namespace {

namespace pk = portable;

class HopperNarrowVariant final : public HopperFamilyVariant {
 public:
  [[nodiscard]] const char* config_name() const override { return "hopper_narrow"; }
  [[nodiscard]] std::string kernel_name(const LaunchChoice& c) const override {
    return "cuda_hopper_narrow_keys_m64_n" + std::to_string(c.n_cols) + "_" +
           kv_format_name(c.kv_format);
  }

  [[nodiscard]] std::string refusal(const Problem& p, const DeviceInfo& device) const override {
    if (!hopper_narrow::reads(kv_read_of(p.kv_format)))
      return std::string("the cache is ") + kv_format_name(p.kv_format) +
             " (the narrow kernel reads the 8-bit caches: fp8_e4m3, int8, fp8_ds_mla)";
    const int64_t rows = p.s_q * p.heads_per_kv();
    if (rows > hopper_narrow::max_rows())
      return (p.h_kv == 1 ? "s_q x h_q = " : "s_q x h_q / h_kv = ") + std::to_string(rows) +
             " query rows (the narrow kernel takes at most " + std::to_string(hopper_narrow::max_rows()) + ")";
    std::string why = hopper_family_refusal(p, device);
    if (why.empty() && !hopper_narrow::verified())
      why = "not verified (the kernel is compiled but has not passed the GPU checks)";
    return why;
  }

  LaunchChoice configure(const Problem& p, const DeviceInfo& device, const CudaConfig&, std::ostream& why) const override {
    const int rows = static_cast<int>(p.s_q * p.heads_per_kv());
    const pk::KvRead read = kv_read_of(p.kv_format);
    const int occ = hopper_narrow::prepare(rows, read);
    LaunchChoice c = base_choice(p, device, occ, hopper_narrow::smem_bytes(rows, read), hopper_narrow::threads_per_cta(rows),
                                 "narrow Hopper kernel");
    const int wgs = hopper_narrow::warpgroups(rows);
    c.n_cols = hopper_narrow::columns(rows);
    c.stages = 2 * wgs;
    c.m_tiles = 1;
    c.units = 1;
    c.pieces = occ * device.prop.multiProcessorCount;
    c.grid = c.pieces;
    c.max_splits = static_cast<int64_t>(c.pieces) + p.batch + 1;  // bound of hopper_scheduler.cu
    why << "narrow Hopper kernel (sm_90a: keys on the wgmma M dimension, S^T = K Q^T and O^T = V^T P^T with N = "
        << hopper_narrow::columns(rows) << " query rows; the " << kv_format_name(p.kv_format)
        << " bytes of each 64-token page brought in by one bulk copy and dequantized to fp16 in registers on their way "
           "to the tensor cores"
        << (read == pk::KvRead::fp8_ds_mla ? " (times each key's group scale; the bf16 rope as stored under a bf16 query)" : "") << "; "
        << (wgs == 1 ? "one warpgroup per CTA, whose thread 0 also issues the copies, 2-stage ring"
                     : "two warpgroups per CTA taking a page each (S^T) and half the value dims each (O^T), thread 0 "
                       "issuing the copies, 4-stage ring")
        << "), persistent grid "
        << c.grid << " (" << occ << " CTA/SM x " << device.prop.multiProcessorCount << " SMs)";
    return c;
  }

  [[nodiscard]] std::string describe_schedule(const LaunchChoice& c, int32_t) const override {
    return schedule_text(c, "one CTA each");
  }

  void launch_decode(const LaunchChoice& c, const pk::DecodeParams& params, int64_t kv_blocks,
                     const pk::ScheduleLayout& layout, cudaStream_t stream) const override {
    hopper_narrow::launch_decode(c.elem, c.grid, params, kv_blocks, layout, stream);
  }
};

}  // namespace

const KernelVariant& hopper_narrow_variant() {
  static const HopperNarrowVariant variant;
  return variant;
}

}  // namespace mla::cuda
