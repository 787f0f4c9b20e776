// The cuda backend: the factory, the device (CUDA device memory and streams), the plan (kernel
// choice, persistent grid, workspace size) and the schedule (device-side split-KV partition).
#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>
#include <sstream>
#include <vector>

#include <cuda_runtime.h>

#include "cuda_check.hpp"
#include "cuda_config.hpp"
#include "mla/error.hpp"
#include "mla/registry.hpp"
#include "mla/validate.hpp"
#include "portable/portable_launch.hpp"

namespace mla {
namespace cuda {
namespace {

namespace pk = portable;

// Work items per persistent CTA the scheduler aims at: smaller items balance varlen batches
// (CTAs take items dynamically), at the cost of more partials to combine.
constexpr int kScheduleWaves = 4;

struct DeviceInfo {
  int index = 0;
  cudaDeviceProp prop{};
  [[nodiscard]] std::string describe() const {
    std::ostringstream os;
    os << prop.name << " (sm_" << prop.major << prop.minor << ", " << prop.multiProcessorCount << " SMs, "
       << (prop.totalGlobalMem >> 20) << " MiB)";
    return os.str();
  }
};

class DeviceGuard {  // makes the config's device current for the calls in scope
 public:
  explicit DeviceGuard(int index) { check(cudaSetDevice(index), "cudaSetDevice"); }
};

// Workspaces outlive neither the device nor their plan's pool; recycling them means a
// schedule made while a stream is capturing a graph needs no cudaMalloc (which would break
// the capture): make and drop one schedule of the plan before capturing.
class WorkspacePool {
 public:
  WorkspacePool(int device, size_t bytes) : device_(device), bytes_(bytes) {}
  ~WorkspacePool() {
    cudaSetDevice(device_);
    for (void* p : free_) cudaFree(p);
  }
  void* take(cudaStream_t stream) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!free_.empty()) {
        void* p = free_.back();
        free_.pop_back();
        return p;
      }
    }
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    check(cudaStreamIsCapturing(stream, &capture), "cudaStreamIsCapturing");
    if (capture != cudaStreamCaptureStatusNone)
      fail(ErrorCode::invalid_argument,
           "cuda: schedule() while the stream is capturing needs a recycled workspace: make and drop one schedule "
           "of this plan before capturing");
    void* p = nullptr;
    DeviceGuard guard(device_);
    check(cudaMalloc(&p, std::max<size_t>(bytes_, 256)), "cudaMalloc(schedule workspace)");
    return p;
  }
  void give(void* p) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.push_back(p);
  }
  [[nodiscard]] size_t bytes() const { return bytes_; }

 private:
  int device_;
  size_t bytes_;
  std::mutex mutex_;
  std::vector<void*> free_;
};

class CudaSchedule final : public Schedule {
 public:
  CudaSchedule(std::shared_ptr<WorkspacePool> pool, void* base, pk::ScheduleLayout layout, std::string text)
      : pool_(std::move(pool)), base_(base), layout_(layout), text_(std::move(text)) {}
  // The workspace returns to the pool; work still queued on a stream that uses it must be
  // finished (or belong to a graph that is no longer launched) before the next schedule reuses it.
  ~CudaSchedule() override { pool_->give(base_); }
  [[nodiscard]] std::string describe() const override { return text_; }
  [[nodiscard]] const pk::ScheduleLayout& layout() const { return layout_; }
  [[nodiscard]] const void* owner() const { return pool_.get(); }

 private:
  std::shared_ptr<WorkspacePool> pool_;
  void* base_;
  pk::ScheduleLayout layout_;
  std::string text_;
};

struct PortableChoice {
  pk::TileShape shape = pk::TileShape::m64;
  pk::Elem elem = pk::Elem::bf16;
  int stages = 2;
  int ctas_per_sm = 1;
  int grid = 1;
  int units = 1;
  int m_tiles = 1;
  int64_t max_splits = 1;
};

class CudaPlan final : public Plan {
 public:
  CudaPlan(const Problem& problem, const DeviceInfo& dev, const CudaConfig& config, PortableChoice choice,
           std::string why)
      : Plan(problem), dev_(dev), config_(config), choice_(choice), why_(std::move(why)) {
    const int64_t rows = problem.s_q * problem.h_q;
    pool_ = std::make_shared<WorkspacePool>(dev.index,
                                            pk::schedule_workspace_bytes(problem.batch, choice_.max_splits, rows));
  }

  [[nodiscard]] std::string backend_name() const override { return "cuda"; }
  [[nodiscard]] std::string kernel_name() const override {
    return std::string("cuda_portable_mma_m") + std::to_string(pk::tile_rows(choice_.shape));
  }
  [[nodiscard]] std::string explain() const override { return why_; }
  [[nodiscard]] size_t workspace_bytes() const override { return pool_->bytes(); }

 protected:
  std::unique_ptr<Schedule> do_schedule(const TensorView& seqlens, void* stream) const override {
    if (seqlens.space != MemorySpace::device)
      fail(ErrorCode::invalid_argument, "cache_seqlens: expected device memory for the cuda backend, got host");
    DeviceGuard guard(dev_.index);
    auto s = static_cast<cudaStream_t>(stream);
    void* base = pool_->take(s);
    const Problem& p = problem();
    pk::ScheduleLayout layout = pk::carve_schedule_layout(base, p.batch, choice_.max_splits, p.s_q * p.h_q);
    try {
      pk::launch_scheduler(seqlens.as<const int32_t>(), static_cast<int32_t>(p.batch),
                           static_cast<int32_t>(p.max_blocks_per_seq * p.page_size), choice_.units,
                           choice_.grid * kScheduleWaves, min_chunk(), layout, s);
    } catch (...) {
      pool_->give(base);
      throw;
    }
    std::ostringstream os;
    os << "device-side split-KV schedule: chunk = max(" << min_chunk()
       << ", total keys x " << choice_.units << " units / (" << choice_.grid << " CTAs x " << kScheduleWaves
       << " items each)), at most "
       << choice_.max_splits << " splits";
    return std::make_unique<CudaSchedule>(pool_, base, layout, os.str());
  }

  RunResult do_run(const RunArgs& a, const Schedule& schedule, void* stream) const override {
    auto* cs = dynamic_cast<const CudaSchedule*>(&schedule);
    if (!cs || cs->owner() != pool_.get())
      fail(ErrorCode::invalid_argument, "schedule: it was not made by this cuda plan");
    if (a.out.space != MemorySpace::device)
      fail(ErrorCode::invalid_argument, "out: expected device memory for the cuda backend, got host");
    const Problem& p = problem();
    check_layout("q", a.q, p.d_qk());
    check_layout("kv_cache", a.kv_cache, p.d_qk());
    check_layout("out", a.out, p.d_v());
    if (a.block_table.strides[1] != 1)
      fail(ErrorCode::unsupported, "block_table: the cuda kernels need unit stride along the blocks of a sequence");

    pk::DecodeParams d;
    d.q = a.q.data;
    d.q_stride_b = a.q.strides[0];
    d.q_stride_t = a.q.strides[1];
    d.q_stride_h = a.q.strides[2];
    d.kv = a.kv_cache.data;
    d.kv_stride_block = a.kv_cache.strides[0];
    d.kv_stride_token = a.kv_cache.strides[1];
    d.kv_stride_head = a.kv_cache.strides[2];
    d.block_table = a.block_table.as<const int32_t>();
    d.bt_stride = a.block_table.strides[0];
    d.out = a.out.data;
    d.out_stride_b = a.out.strides[0];
    d.out_stride_t = a.out.strides[1];
    d.out_stride_h = a.out.strides[2];
    d.lse = a.lse.as<float>();
    d.lse_stride_b = a.lse.strides[0];
    d.lse_stride_h = a.lse.strides[1];
    d.lse_stride_t = a.lse.strides[2];
    d.batch = static_cast<int32_t>(p.batch);
    d.s_q = static_cast<int32_t>(p.s_q);
    d.h_q = static_cast<int32_t>(p.h_q);
    d.h_kv = static_cast<int32_t>(p.h_kv);
    d.page_size = static_cast<int32_t>(p.page_size);
    d.heads_per_kv = static_cast<int32_t>(p.heads_per_kv());
    d.rows_per_group = static_cast<int32_t>(p.s_q * p.heads_per_kv());
    d.m_tiles = choice_.m_tiles;
    d.units = choice_.units;
    d.causal = p.causal ? 1 : 0;
    d.scale_log2 = p.effective_scale() * 1.4426950408889634f;

    DeviceGuard guard(dev_.index);
    auto s = static_cast<cudaStream_t>(stream);
    check(cudaMemsetAsync(cs->layout().work_counter, 0, sizeof(int32_t), s), "cudaMemsetAsync(work counter)");
    pk::launch_decode(choice_.shape, choice_.elem, choice_.stages, choice_.grid, d, cs->layout(), s);
    pk::launch_combine(choice_.elem, d, cs->layout(), s);
    RunResult r;
    r.backend = backend_name();
    r.kernel = kernel_name();
    std::ostringstream os;
    os << "{\"kernel\":\"" << kernel_name() << "\",\"grid\":" << choice_.grid << ",\"threads\":"
       << pk::tile_threads(choice_.shape) << ",\"stages\":" << choice_.stages << ",\"units\":" << choice_.units
       << ",\"max_splits\":" << choice_.max_splits << "}";
    r.report_json = os.str();
    return r;
  }

  void check_indices(const RunArgs& a, void* stream) const override {
    DeviceGuard guard(dev_.index);
    auto s = static_cast<cudaStream_t>(stream);
    const Problem& p = problem();
    std::vector<int32_t> lens(static_cast<size_t>(p.batch));
    const size_t table_elems = static_cast<size_t>(a.block_table.strides[0] * (p.batch - 1) + p.max_blocks_per_seq);
    std::vector<int32_t> table(table_elems);
    check(cudaMemcpyAsync(lens.data(), a.cache_seqlens.data, lens.size() * 4, cudaMemcpyDeviceToHost, s),
          "cudaMemcpyAsync(cache_seqlens to host)");
    check(cudaMemcpyAsync(table.data(), a.block_table.data, table.size() * 4, cudaMemcpyDeviceToHost, s),
          "cudaMemcpyAsync(block_table to host)");
    check(cudaStreamSynchronize(s), "cudaStreamSynchronize(validate_indices)");
    validate_indices(p, lens.data(), table.data(), a.block_table.strides[0]);
  }

 private:
  // 16-byte cp.async loads and 4-byte paired stores need aligned rows.
  static void check_layout(const char* name, const TensorView& t, int64_t width) {
    if (t.strides[3] != 1)
      fail(ErrorCode::unsupported, std::string(name) + ": the cuda kernels need unit stride in the last dimension");
    for (int d = 0; d < 3; ++d)
      if (t.strides[d] % 8 != 0)
        fail(ErrorCode::unsupported, std::string(name) + ": strides must be multiples of 8 elements, got " +
                                         std::to_string(t.strides[d]) + " in dimension " + std::to_string(d));
    if (reinterpret_cast<uintptr_t>(t.data) % 16 != 0)
      fail(ErrorCode::unsupported, std::string(name) + ": the cuda kernels need 16-byte aligned data");
    (void)width;
  }

  // A split writes rows x kDv fp32 partials that the combine reads back; keep that under about
  // a quarter of the split's KV bytes: chunk >= 8 x rows (2 KiB of partial per row vs 1152 B per key).
  [[nodiscard]] int32_t min_chunk() const {
    const int64_t rows = problem().s_q * problem().h_q;
    return static_cast<int32_t>(std::min<int64_t>(std::max<int64_t>(config_.min_split_tokens, 8 * rows), 1 << 20));
  }

  DeviceInfo dev_;
  CudaConfig config_;
  PortableChoice choice_;
  std::string why_;
  std::shared_ptr<WorkspacePool> pool_;
};

class CudaDevice final : public Device {
 public:
  CudaDevice(CudaConfig config, std::string name, DeviceInfo info)
      : config_(std::move(config)), name_(std::move(name)), info_(info) {}

  [[nodiscard]] std::string backend_name() const override { return "cuda"; }
  [[nodiscard]] std::string name() const override { return name_; }
  [[nodiscard]] MemorySpace memory_space() const override { return MemorySpace::device; }

  void* allocate(size_t bytes) override {
    DeviceGuard guard(info_.index);
    void* p = nullptr;
    cudaError_t st = cudaMalloc(&p, std::max<size_t>(bytes, 256));  // cudaMalloc aligns to 256 bytes
    if (st == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      fail(ErrorCode::out_of_memory, "cuda: cudaMalloc of " + std::to_string(bytes) + " bytes failed (out of memory)");
    }
    check(st, "cudaMalloc");
    return p;
  }
  void deallocate(void* ptr) noexcept override {
    if (!ptr) return;
    cudaSetDevice(info_.index);
    cudaFree(ptr);
  }
  // Ordered on `stream`. Copies that touch host memory synchronise the stream before returning
  // (the host buffer may be reused or read at once); device-to-device copies stay asynchronous.
  void copy(void* dst, const void* src, size_t bytes, CopyKind kind, void* stream) override {
    if (bytes == 0) return;
    if (!dst || !src) fail(ErrorCode::invalid_argument, "cuda: copy with a null pointer");
    DeviceGuard guard(info_.index);
    auto s = static_cast<cudaStream_t>(stream);
    const cudaMemcpyKind k = kind == CopyKind::host_to_device   ? cudaMemcpyHostToDevice
                             : kind == CopyKind::device_to_host ? cudaMemcpyDeviceToHost
                                                                : cudaMemcpyDeviceToDevice;
    check(cudaMemcpyAsync(dst, src, bytes, k, s), "cudaMemcpyAsync");
    if (kind != CopyKind::device_to_device) check(cudaStreamSynchronize(s), "cudaStreamSynchronize(after copy)");
  }
  // Waits for `stream` (nullptr: the legacy default stream, which waits for blocking streams).
  void synchronize(void* stream) override {
    DeviceGuard guard(info_.index);
    check(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)), "cudaStreamSynchronize");
  }

 protected:
  std::unique_ptr<Plan> do_plan(const Problem& p) const override {
    if (p.variant != Variant::latent)
      fail(ErrorCode::unsupported, "cuda: the absorb variant (DESIGN 2.2) is not implemented yet; use the latent form");
    if (p.kv.scaling != KvScaling::none)
      fail(ErrorCode::unsupported, "cuda: quantized KV formats (" + p.kv.describe() + ") are not implemented yet");
    if (p.dtype != DType::bf16 && p.dtype != DType::fp16)
      fail(ErrorCode::unsupported, std::string("cuda: dtype ") + dtype_name(p.dtype) + " is not supported (bf16 or fp16)");
    if (p.kv.dtype != p.dtype)
      fail(ErrorCode::unsupported, std::string("cuda: kv dtype ") + dtype_name(p.kv.dtype) +
                                       " must equal the query dtype " + dtype_name(p.dtype));
    if (p.d_c != pk::kDv || p.d_qk() != pk::kDqk)
      fail(ErrorCode::unsupported, "cuda: kernels are compiled for d_c = 512, d_r = 64; got d_c = " +
                                       std::to_string(p.d_c) + ", d_r = " + std::to_string(p.d_r));
    if (info_.prop.major < 8)
      fail(ErrorCode::unsupported, "cuda: the portable kernel needs sm_80 or newer; " + info_.describe());
    if (config_.kernel == "hopper")
      fail(ErrorCode::unsupported,
           "cuda: config cuda.kernel = hopper, but the Hopper (TMA + wgmma) kernel is not implemented in this build; "
           "use \"auto\" or \"portable\"");
    if (p.batch > (int64_t{1} << 24) || p.s_q * p.h_q > 65535)
      fail(ErrorCode::unsupported, "cuda: batch above 2^24 or s_q * h_q above 65535 is not supported");
    if (p.max_blocks_per_seq * p.page_size > INT32_MAX)
      fail(ErrorCode::unsupported, "cuda: sequences longer than 2^31 keys are not supported");

    DeviceGuard guard(info_.index);
    PortableChoice c;
    c.elem = p.dtype == DType::bf16 ? pk::Elem::bf16 : pk::Elem::fp16;
    const int64_t rows = p.s_q * p.heads_per_kv();
    // Smallest row tile that holds the group's rows: padding rows cost MMA work, not bytes.
    c.shape = rows <= 16 ? pk::TileShape::m16 : rows <= 32 ? pk::TileShape::m32 : pk::TileShape::m64;
    const size_t smem_limit = info_.prop.sharedMemPerBlockOptin;
    // Pipeline depth: the most resident CTAs first (latency hiding across CTAs), then the
    // deepest pipeline at that occupancy.
    c.stages = 0;
    int occ = 0;
    for (int st = static_cast<int>(config_.max_stages); st >= 2; --st) {
      if (pk::decode_smem_bytes(c.shape, st) > smem_limit) continue;
      pk::prepare_decode(c.shape, c.elem, st);
      const int o = pk::decode_occupancy(c.shape, c.elem, st);
      if (o > occ) {
        occ = o;
        c.stages = st;
      }
    }
    if (c.stages == 0 || occ < 1)
      fail(ErrorCode::unsupported, "cuda: the portable kernel needs " +
                                       std::to_string(pk::decode_smem_bytes(c.shape, 2)) +
                                       " bytes of shared memory per block; " + info_.describe() + " allows " +
                                       std::to_string(smem_limit));
    pk::prepare_decode(c.shape, c.elem, c.stages);
    c.ctas_per_sm = config_.ctas_per_sm > 0 ? std::min<int>(occ, static_cast<int>(config_.ctas_per_sm)) : occ;
    c.grid = c.ctas_per_sm * info_.prop.multiProcessorCount;
    c.m_tiles = static_cast<int>((rows + pk::tile_rows(c.shape) - 1) / pk::tile_rows(c.shape));
    c.units = static_cast<int>(p.h_kv) * c.m_tiles;
    c.max_splits = static_cast<int64_t>(c.grid) * kScheduleWaves / c.units + p.batch + 1;  // bound of scheduler.cu

    std::ostringstream why;
    why << "portable mma.sync kernel, " << pk::tile_rows(c.shape) << " query rows per CTA (s_q x heads per KV = "
        << rows << "), " << c.stages << "-stage cp.async pipeline, persistent grid " << c.grid << " = "
        << c.ctas_per_sm << " CTA/SM x " << info_.prop.multiProcessorCount << " SMs; ";
    if (config_.kernel == "portable")
      why << "config cuda.kernel = portable";
    else
      why << "kernel = auto: the Hopper (TMA + wgmma) kernel is not implemented yet, so the portable kernel runs";
    why << " on " << info_.describe();
    return std::make_unique<CudaPlan>(p, info_, config_, c, why.str());
  }

 private:
  CudaConfig config_;
  std::string name_;
  DeviceInfo info_;
};

Availability probe(int index) {
  int count = 0;
  cudaError_t st = cudaGetDeviceCount(&count);
  if (st != cudaSuccess) {
    cudaGetLastError();
    return {false, std::string("no usable CUDA device: ") + cudaGetErrorName(st) + " (" + cudaGetErrorString(st) + ")"};
  }
  if (count == 0) return {false, "no CUDA device found"};
  if (index >= count)
    return {false, "cuda.device_index " + std::to_string(index) + " but only " + std::to_string(count) + " device(s)"};
  DeviceInfo info;
  st = cudaGetDeviceProperties(&info.prop, index);
  if (st != cudaSuccess) return {false, std::string("cudaGetDeviceProperties: ") + cudaGetErrorString(st)};
  info.index = index;
  return {true, std::to_string(count) + " device(s); device " + std::to_string(index) + ": " + info.describe()};
}

}  // namespace
}  // namespace cuda

BackendFactory make_cuda_backend_factory() {
  BackendFactory f;
  f.name = "cuda";
  f.description = "NVIDIA GPU backend: portable mma.sync split-KV kernel (sm_80+); Hopper kernel not yet built";
  f.availability = [] { return cuda::probe(0); };
  f.parse_config = [](ConfigReader& root) -> std::any { return cuda::parse_cuda_config(root); };
  f.open = [](const std::any& parsed, const std::string& name) -> std::unique_ptr<Device> {
    auto config = std::any_cast<cuda::CudaConfig>(parsed);
    Availability a = cuda::probe(static_cast<int>(config.device_index));
    if (!a.available) fail(ErrorCode::backend_unavailable, "cuda: " + a.reason);
    cuda::DeviceInfo info;
    info.index = static_cast<int>(config.device_index);
    cuda::check(cudaGetDeviceProperties(&info.prop, info.index), "cudaGetDeviceProperties");
    return std::make_unique<cuda::CudaDevice>(std::move(config), name, info);
  };
  return f;
}

}  // namespace mla
