// The cuda backend's decode kernels as one table of variants (variants/*.cpp). Each says what it
// cannot run and why, sizes its work for a problem on a device, and launches its scheduler and
// decode kernel; the backend walks the table in preference order (cuda_backend.cpp) and shares
// the rest (workspace, combine, absorb projections). A new kernel (the next architecture's) is
// one more file here and one entry in kernel_variants().
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "../cuda_config.hpp"
#include "../device_info.hpp"
#include "../portable/portable_launch.hpp"
#include "mla/problem.hpp"

namespace mla::cuda {

class KernelVariant;

// How one plan runs: the variant and the sizes it chose.
struct LaunchChoice {
  const KernelVariant* variant = nullptr;
  portable::TileShape shape = portable::TileShape::m64;  // rows per CTA (portable)
  portable::Elem elem = portable::Elem::bf16;
  KvFormat kv_format = KvFormat::bf16;  // the cache's format (names the kernel)
  int stages = 2;
  int threads = 0;      // per CTA
  int ctas_per_sm = 1;
  int grid = 1;         // persistent CTAs
  int units = 1;        // CTAs per split (KV heads x row tiles)
  int m_tiles = 1;      // row tiles per KV head
  int pieces = 1;       // KV pieces of a contiguous schedule (grid = pieces x units)
  int n_cols = 0;       // query rows on the wgmma N dimension (narrow Hopper kernel)
  int64_t max_splits = 1;  // bound on the schedule's entries (sizes the workspace)
};

// What a variant's scheduler needs beyond the layout.
struct ScheduleInputs {
  const int32_t* cache_seqlens = nullptr;
  int32_t batch = 0;
  int32_t capacity_tokens = 0;  // max_blocks_per_seq * page_size
  int32_t min_chunk = 0;        // keys per split at least (portable)
};

class KernelVariant {
 public:
  virtual ~KernelVariant() = default;
  // The value of the config's cuda.kernel that forces this variant ("hopper", "portable").
  [[nodiscard]] virtual const char* config_name() const = 0;
  [[nodiscard]] virtual std::string kernel_name(const LaunchChoice& choice) const = 0;
  // Why this variant cannot run `p` on `device` ("" when it can): from the problem and the
  // device's properties alone, so supports() can ask it without making a plan.
  [[nodiscard]] virtual std::string refusal(const Problem& p, const DeviceInfo& device) const = 0;
  // Sizes the work (grid, tiles, pipeline depth, schedule bound) and says why in `why`;
  // Error(unsupported) when the device cannot hold it after all (shared memory).
  virtual LaunchChoice configure(const Problem& p, const DeviceInfo& device, const CudaConfig& config,
                                 std::ostream& why) const = 0;
  virtual void launch_scheduler(const LaunchChoice& choice, const ScheduleInputs& in,
                                const portable::ScheduleLayout& layout, cudaStream_t stream) const = 0;
  [[nodiscard]] virtual std::string describe_schedule(const LaunchChoice& choice, int32_t min_chunk) const = 0;
  // The decode kernel; the backend launches the shared combine after it.
  virtual void launch_decode(const LaunchChoice& choice, const portable::DecodeParams& params, int64_t kv_blocks,
                             const portable::ScheduleLayout& layout, cudaStream_t stream) const = 0;
  // Whether the combine may start as a programmatic dependent of this decode kernel (sm_90).
  [[nodiscard]] virtual bool programmatic_combine() const { return false; }
};

// Every variant, most preferred first: kernel = auto takes the first that does not refuse.
const std::vector<const KernelVariant*>& kernel_variants();

// How the kernels read a cache of `format` (plain: 16-bit elements of the query's dtype).
portable::KvRead kv_read_of(KvFormat format);

// Work items per persistent CTA the portable scheduler aims at: smaller items balance varlen
// batches (CTAs take items dynamically), at the cost of more partials to combine.
inline constexpr int kScheduleWaves = 4;

}  // namespace mla::cuda
