// The portable kernel (sm_80+: cp.async + mma.sync, portable/) as a table entry: every shape
// and KV format the backend accepts, 16/32/64 query rows per CTA, a dynamically balanced
// split-KV schedule.
#include <algorithm>

#include "kernel_variant.hpp"
#include "mla/error.hpp"

namespace mla::cuda {
namespace {

namespace pk = portable;

class PortableVariant final : public KernelVariant {
 public:
  [[nodiscard]] const char* config_name() const override { return "portable"; }
  [[nodiscard]] std::string kernel_name(const LaunchChoice& c) const override {
    return "cuda_portable_mma_m" + std::to_string(pk::tile_rows(c.shape));
  }

  [[nodiscard]] std::string refusal(const Problem&, const DeviceInfo& device) const override {
    if (device.prop.major < 8) return "the portable kernel needs sm_80 or newer; " + device.describe();
    return "";
  }

  LaunchChoice configure(const Problem& p, const DeviceInfo& device, const CudaConfig& config,
                         std::ostream& why) const override {
    const int64_t rows = p.s_q * p.heads_per_kv();
    LaunchChoice c;
    c.variant = this;
    c.elem = p.dtype == DType::bf16 ? pk::Elem::bf16 : pk::Elem::fp16;
    c.kv_format = p.kv_format;
    // Smallest row tile that holds the group's rows: padding rows cost MMA work, not bytes.
    c.shape = rows <= 16 ? pk::TileShape::m16 : rows <= 32 ? pk::TileShape::m32 : pk::TileShape::m64;
    c.threads = pk::tile_threads(c.shape);
    const size_t smem_limit = device.prop.sharedMemPerBlockOptin;
    const bool staged = is_quantized(p.kv_format);  // 8-bit tiles stage their bytes in shared memory
    // Pipeline depth: the most resident CTAs first (latency hiding across CTAs), then the
    // deepest pipeline at that occupancy.
    c.stages = 0;
    int occ = 0;
    for (int st = static_cast<int>(config.max_stages); st >= 2; --st) {
      if (pk::decode_smem_bytes(c.shape, st, staged) > smem_limit) continue;
      pk::prepare_decode(c.shape, c.elem, st, staged);
      const int o = pk::decode_occupancy(c.shape, c.elem, st, staged);
      if (o > occ) {
        occ = o;
        c.stages = st;
      }
    }
    if (c.stages == 0 || occ < 1)
      fail(ErrorCode::unsupported, "cuda: the portable kernel needs " + std::to_string(pk::decode_smem_bytes(c.shape, 2, staged)) +
                                       " bytes of shared memory per block; " + device.describe() + " allows " +
                                       std::to_string(smem_limit));
    pk::prepare_decode(c.shape, c.elem, c.stages, staged);
    c.ctas_per_sm = config.ctas_per_sm > 0 ? std::min<int>(occ, static_cast<int>(config.ctas_per_sm)) : occ;
    c.grid = c.ctas_per_sm * device.prop.multiProcessorCount;
    c.m_tiles = static_cast<int>((rows + pk::tile_rows(c.shape) - 1) / pk::tile_rows(c.shape));
    c.units = static_cast<int>(p.h_kv) * c.m_tiles;
    c.max_splits = static_cast<int64_t>(c.grid) * kScheduleWaves / c.units + p.batch + 1;  // bound of scheduler.cu
    why << "portable mma.sync kernel, " << pk::tile_rows(c.shape) << " query rows per CTA (s_q x heads per KV = " << rows
        << "), " << c.stages << "-stage cp.async pipeline, persistent grid " << c.grid << " = " << c.ctas_per_sm
        << " CTA/SM x " << device.prop.multiProcessorCount << " SMs";
    if (is_quantized(p.kv_format))
      why << ", " << kv_format_name(p.kv_format)
          << " cache: bytes staged in shared memory by cp.async, dequantized into the 16-bit tile";
    return c;
  }

  void launch_scheduler(const LaunchChoice& c, const ScheduleInputs& in, const pk::ScheduleLayout& layout,
                        cudaStream_t stream) const override {
    pk::launch_scheduler(in.cache_seqlens, in.batch, in.capacity_tokens, c.units, c.grid * kScheduleWaves, in.min_chunk,
                         0, layout, stream);
  }

  [[nodiscard]] std::string describe_schedule(const LaunchChoice& c, int32_t min_chunk) const override {
    return "device-side split-KV schedule: chunk = max(" + std::to_string(min_chunk) + ", total keys x " +
           std::to_string(c.units) + " units / (" + std::to_string(c.grid) + " CTAs x " +
           std::to_string(kScheduleWaves) + " items each)), at most " + std::to_string(c.max_splits) + " splits";
  }

  void launch_decode(const LaunchChoice& c, const pk::DecodeParams& params, int64_t, const pk::ScheduleLayout& layout,
                     cudaStream_t stream) const override {
    // CTAs take items from this counter, reset before every launch.
    check(cudaMemsetAsync(layout.work_counter, 0, sizeof(int32_t), stream), "cudaMemsetAsync(work counter)");
    pk::launch_decode(c.shape, c.elem, c.stages, c.grid, params, layout, stream);
  }
};

}  // namespace

const KernelVariant& portable_variant() {
  static const PortableVariant variant;
  return variant;
}

}  // namespace mla::cuda
