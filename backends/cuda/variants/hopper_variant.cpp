// The Hopper kernel (sm_90a: TMA + wgmma, hopper/) as a table entry: bf16/fp16 queries over
// caches of every KV format in 64-token pages with one latent head; a contiguous cost-balanced schedule whose pieces are each run by
// one CTA per 64-row tile.
#include <algorithm>

#include "../hopper/hopper_launch.hpp"
#include "hopper_family.hpp"
#include "kernel_variant.hpp"

namespace mla::cuda {
namespace {

namespace pk = portable;

class HopperVariant final : public HopperFamilyVariant {
 public:
  [[nodiscard]] const char* config_name() const override { return "hopper"; }
  [[nodiscard]] std::string kernel_name(const LaunchChoice& c) const override {
    const std::string base = "cuda_hopper_tma_wgmma_m64";
    return is_quantized(c.kv_format) ? base + "_" + kv_format_name(c.kv_format) : base;
  }

  [[nodiscard]] std::string refusal(const Problem& p, const DeviceInfo& device) const override {
    std::string why = hopper_family_refusal(p, device);
    if (why.empty() && !hopper::verified()) why = "not verified (the kernel is compiled but has not passed the GPU checks)";
    return why;
  }

  LaunchChoice configure(const Problem& p, const DeviceInfo& device, const CudaConfig&, std::ostream& why) const override {
    const int occ = hopper::prepare();
    LaunchChoice c = base_choice(p, device, occ, hopper::smem_bytes(), hopper::threads_per_cta(), "Hopper kernel");
    const int64_t rows = p.s_q * p.heads_per_kv();
    c.m_tiles = static_cast<int>((rows + hopper::rows_per_cta() - 1) / hopper::rows_per_cta());
    c.units = c.m_tiles;
    // The units (row tiles) of one KV piece run side by side, so the KV is read from HBM about
    // once: pieces = SMs / units, grid = pieces x units.
    c.pieces = std::max(1, occ * device.prop.multiProcessorCount / c.units);
    c.grid = c.pieces * c.units;
    c.max_splits = static_cast<int64_t>(c.pieces) + p.batch + 1;  // bound of hopper_scheduler.cu
    why << "Hopper kernel (sm_90a: TMA loads of 64-key KV blocks, wgmma QK^T and PV, 2 math warpgroups x 256 "
           "output columns + a producer warp, 2-stage mbarrier ring), 64 query rows per CTA (s_q x h_q = "
        << rows << " in " << c.m_tiles << " tile(s)), persistent grid " << c.grid << " = " << c.pieces
        << " KV pieces x " << c.units << " row tile(s) (" << occ << " CTA/SM x " << device.prop.multiProcessorCount
        << " SMs)";
    if (is_quantized(p.kv_format))
      why << "; " << kv_format_name(p.kv_format)
          << " cache: its 8-bit bytes loaded by TMA into the 16-bit tile's own shared memory and dequantized there by "
             "three producer warps (scales folded into q and the output, or applied per token group)";
    return c;
  }

  [[nodiscard]] std::string describe_schedule(const LaunchChoice& c, int32_t) const override {
    return schedule_text(c, "each run by " + std::to_string(c.units) + " CTA(s), one per 64-row tile");
  }

  void launch_decode(const LaunchChoice& c, const pk::DecodeParams& params, int64_t kv_blocks,
                     const pk::ScheduleLayout& layout, cudaStream_t stream) const override {
    hopper::launch_decode(c.elem, c.grid, params, kv_blocks, layout, stream);
  }
};

}  // namespace

const KernelVariant& hopper_variant() {
  static const HopperVariant variant;
  return variant;
}

}  // namespace mla::cuda
