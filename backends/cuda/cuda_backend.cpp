// The cuda backend: the factory, the device (CUDA device memory and streams), the plan (kernel
// choice, persistent grid, workspace size) and the schedule (device-side split-KV partition).
#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <vector>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "cuda_ceilings.hpp"
#include "cuda_check.hpp"
#include "cuda_config.hpp"
#include "device_info.hpp"
#include "mla/error.hpp"
#include "mla/registry.hpp"
#include "mla/validate.hpp"
#include "portable/portable_launch.hpp"
#include "context/context_merge.hpp"
#include "context/nccl_communicator.hpp"
#include "variants/kernel_variant.hpp"
#include "write_kv/write_kv_launch.hpp"

namespace mla {
namespace cuda {
namespace {

namespace pk = portable;

// The matmul ceiling is an 8192^3 bf16 GEMM, as in ANCHORS.md (1.1 TFLOP, about 1.4 ms on an H100).
constexpr int kCeilingMatmulN = 8192;

// One cuBLAS handle per device, created on first use (the absorb variant's projections). The
// mutex covers cublasSetStream + the GEMMs of one run, so plans on several threads can share it.
class CublasHandle {
 public:
  explicit CublasHandle(int device) : device_(device) {}
  ~CublasHandle() {
    if (handle_) {
      cudaSetDevice(device_);
      cublasDestroy(handle_);
    }
  }
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  // Returns the handle bound to `stream`; hold lock() while using it.
  cublasHandle_t bind(cudaStream_t stream) {
    if (!handle_) {
      check_cublas(cublasCreate(&handle_), "cublasCreate");
      check_cublas(cublasSetPointerMode(handle_, CUBLAS_POINTER_MODE_HOST), "cublasSetPointerMode");
    }
    check_cublas(cublasSetStream(handle_, stream), "cublasSetStream");
    return handle_;
  }
  std::mutex& mutex() { return mutex_; }

 private:
  int device_;
  cublasHandle_t handle_ = nullptr;
  std::mutex mutex_;
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
  [[nodiscard]] void* base() const { return base_; }

 private:
  std::shared_ptr<WorkspacePool> pool_;
  void* base_;
  pk::ScheduleLayout layout_;
  std::string text_;
};

class CudaPlan final : public Plan {
 public:
  CudaPlan(const Problem& problem, const DeviceInfo& dev, const CudaConfig& config, LaunchChoice choice,
           std::string why, std::shared_ptr<CublasHandle> cublas)
      : Plan(problem), dev_(dev), config_(config), choice_(choice), why_(std::move(why)), cublas_(std::move(cublas)) {
    const int64_t rows = problem.s_q * problem.h_q;
    sched_bytes_ = align256(pk::schedule_workspace_bytes(problem.batch, choice_.max_splits, rows));
    size_t bytes = sched_bytes_;
    if (problem.variant == Variant::absorb) {
      // Absorb: the latent query [b, s_q, h_q, d_qk] and o_latent [b, s_q, h_q, d_c], both in
      // the problem's dtype, follow the split-KV workspace in the same allocation.
      const size_t n = static_cast<size_t>(problem.batch * rows);
      qlat_bytes_ = align256(n * static_cast<size_t>(problem.d_qk()) * dtype_size(problem.dtype));
      bytes += qlat_bytes_ + align256(n * static_cast<size_t>(problem.d_c) * dtype_size(problem.dtype));
    }
    pool_ = std::make_shared<WorkspacePool>(dev.index, bytes);
  }

  [[nodiscard]] std::string backend_name() const override { return "cuda"; }
  [[nodiscard]] std::string kernel_name() const override {
    return choice_.variant->kernel_name(choice_);
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
      ScheduleInputs in;
      in.cache_seqlens = seqlens.as<const int32_t>();
      in.batch = static_cast<int32_t>(p.batch);
      in.capacity_tokens = static_cast<int32_t>(p.max_blocks_per_seq * p.page_size);
      in.min_chunk = min_chunk();
      choice_.variant->launch_scheduler(choice_, in, layout, s);
    } catch (...) {
      pool_->give(base);
      throw;
    }
    return std::make_unique<CudaSchedule>(pool_, base, layout, choice_.variant->describe_schedule(choice_, min_chunk()));
  }

  RunResult do_run(const RunArgs& a, const Schedule& schedule, void* stream) const override {
    auto* cs = dynamic_cast<const CudaSchedule*>(&schedule);
    if (!cs || cs->owner() != pool_.get())
      fail(ErrorCode::invalid_argument, "schedule: it was not made by this cuda plan");
    if (a.out.space != MemorySpace::device)
      fail(ErrorCode::invalid_argument, "out: expected device memory for the cuda backend, got host");
    const Problem& p = problem();
    check_layout("kv_cache", a.kv_cache, p.d_qk());
    if (a.block_table.strides[1] != 1)
      fail(ErrorCode::unsupported, "block_table: the cuda kernels need unit stride along the blocks of a sequence");
    DeviceGuard guard(dev_.index);
    auto s = static_cast<cudaStream_t>(stream);
    if (p.variant == Variant::latent) {
      check_layout("q", a.q, p.d_qk());
      check_layout("out", a.out, p.d_v());
      run_latent(a, a.q, a.out, *cs, s);
    } else {
      run_absorb(a, *cs, s);
    }
    RunResult r;
    r.backend = backend_name();
    r.kernel = kernel_name();
    std::ostringstream os;
    os << "{\"kernel\":\"" << kernel_name() << "\",\"grid\":" << choice_.grid << ",\"threads\":"
       << choice_.threads << ",\"stages\":" << choice_.stages << ",\"units\":" << choice_.units
       << ",\"max_splits\":" << choice_.max_splits << ",\"variant\":\"" << variant_name(p.variant) << "\"}";
    r.report_json = os.str();
    return r;
  }

  // Latent attention (DESIGN 2.1) of query rows `q` into `out` ([b, s_q, h_q, d_c] views, any
  // dtype-compatible strides); lse into a.lse.
  void run_latent(const RunArgs& a, const TensorView& q, const TensorView& out, const CudaSchedule& cs,
                  cudaStream_t s) const {
    const Problem& p = problem();
    pk::DecodeParams d;
    d.q = q.data;
    d.q_stride_b = q.strides[0];
    d.q_stride_t = q.strides[1];
    d.q_stride_h = q.strides[2];
    d.kv = a.kv_cache.data;
    d.kv_stride_block = a.kv_cache.strides[0];
    d.kv_stride_token = a.kv_cache.strides[1];
    d.kv_stride_head = a.kv_cache.strides[2];
    d.block_table = a.block_table.as<const int32_t>();
    d.bt_stride = a.block_table.strides[0];
    d.out = out.data;
    d.out_stride_b = out.strides[0];
    d.out_stride_t = out.strides[1];
    d.out_stride_h = out.strides[2];
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
    d.kv_read = kv_read_of(p.kv_format);
    d.kv_scale = static_cast<const float*>(a.kv_scale.data);

    choice_.variant->launch_decode(choice_, d, a.kv_cache.shape[0], cs.layout(), s);
    pk::launch_combine(choice_.elem, d, cs.layout(), s, choice_.variant->programmatic_combine());
  }

  // Absorb (DESIGN 2.2): q_latent[h] = q_nope[h] @ w_uk[h] and out[h] = o_latent[h] @ w_uv[h]
  // as cuBLAS strided-batched GEMMs over heads (fp32 accumulation) around the latent kernel;
  // q_rope goes into the last d_r columns of the latent query by one 2D copy.
  void run_absorb(const RunArgs& a, const CudaSchedule& cs, cudaStream_t s) const {
    const Problem& p = problem();
    const int64_t tokens = p.batch * p.s_q;  // GEMM rows per head: (sequence, query token)
    const int64_t d_qk = p.d_qk(), d_c = p.d_c;
    // Rows (b, t) must be one strided dimension for the GEMMs: stride_b == s_q * stride_t.
    auto rows_flat = [&](const char* name, const TensorView& t) {
      if (t.strides[3] != 1 || (p.batch > 1 && t.strides[0] != p.s_q * t.strides[1]))
        fail(ErrorCode::unsupported, std::string(name) +
                                         ": the cuda absorb path needs unit inner stride and stride[0] == s_q * "
                                         "stride[1]");
    };
    rows_flat("q_nope", a.q_nope);
    rows_flat("out", a.out);
    if (a.q_rope.strides[3] != 1 || a.q_rope.strides[1] != p.h_q * a.q_rope.strides[2] ||
        (p.batch > 1 && a.q_rope.strides[0] != p.s_q * a.q_rope.strides[1]))
      fail(ErrorCode::unsupported, "q_rope: the cuda absorb path needs (b, s_q, h_q) rows of one stride");
    for (const auto* w : {&a.w_uk, &a.w_uv})
      if (w->strides[2] != 1 || w->strides[1] != w->shape[2])
        fail(ErrorCode::unsupported, "w_uk / w_uv: the cuda absorb path needs each head's matrix contiguous");

    auto* base = static_cast<unsigned char*>(cs.base());
    void* q_lat = base + sched_bytes_;
    void* o_lat = base + sched_bytes_ + qlat_bytes_;
    const size_t esize = dtype_size(p.dtype);
    const cudaDataType_t ct = p.dtype == DType::bf16 ? CUDA_R_16BF : CUDA_R_16F;
    const float one = 1.f, zero = 0.f;

    std::lock_guard<std::mutex> lock(cublas_->mutex());
    cublasHandle_t h = cublas_->bind(s);
    // Row-major C[M x N] = A[M x K] B[K x N] is column-major C^T = B^T A^T: cuBLAS computes
    // (N x M) = (N x K)(K x M) with the row strides as leading dimensions.
    // q_lat[rows, h, 0:d_c] = q_nope[rows, h, :] @ w_uk[h]
    check_cublas(cublasGemmStridedBatchedEx(
                     h, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(d_c), static_cast<int>(tokens),
                     static_cast<int>(p.d_nope), &one, a.w_uk.data, ct, static_cast<int>(a.w_uk.strides[1]),
                     a.w_uk.strides[0], a.q_nope.data, ct, static_cast<int>(a.q_nope.strides[1]), a.q_nope.strides[2],
                     &zero, q_lat, ct, static_cast<int>(p.h_q * d_qk), d_qk, static_cast<int>(p.h_q),
                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmStridedBatchedEx(q_nope @ w_uk)");
    check(cudaMemcpy2DAsync(static_cast<unsigned char*>(q_lat) + d_c * esize, d_qk * esize, a.q_rope.data,
                            a.q_rope.strides[2] * esize, p.d_r * esize, tokens * p.h_q, cudaMemcpyDeviceToDevice, s),
          "cudaMemcpy2DAsync(q_rope into the latent query)");

    TensorView qv = TensorView::contiguous(q_lat, p.dtype, {p.batch, p.s_q, p.h_q, d_qk}, MemorySpace::device);
    TensorView ov = TensorView::contiguous(o_lat, p.dtype, {p.batch, p.s_q, p.h_q, d_c}, MemorySpace::device);
    run_latent(a, qv, ov, cs, s);

    // out[rows, h, :] = o_lat[rows, h, :] @ w_uv[h]
    check_cublas(cublasGemmStridedBatchedEx(
                     h, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(p.d_vh), static_cast<int>(tokens),
                     static_cast<int>(d_c), &one, a.w_uv.data, ct, static_cast<int>(a.w_uv.strides[1]),
                     a.w_uv.strides[0], o_lat, ct, static_cast<int>(p.h_q * d_c), d_c, &zero, a.out.data, ct,
                     static_cast<int>(a.out.strides[1]), a.out.strides[2], static_cast<int>(p.h_q),
                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmStridedBatchedEx(o_latent @ w_uv)");
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
  // 16-byte cp.async loads and 4-byte paired stores need aligned rows: strides in whole
  // 16-byte steps (8 elements of 16 bits, 16 of the 8-bit formats).
  static void check_layout(const char* name, const TensorView& t, int64_t width) {
    if (t.strides[3] != 1)
      fail(ErrorCode::unsupported, std::string(name) + ": the cuda kernels need unit stride in the last dimension");
    const int64_t step = 16 / static_cast<int64_t>(dtype_size(t.dtype));
    for (int d = 0; d < 3; ++d)
      if (t.strides[d] % step != 0)
        fail(ErrorCode::unsupported, std::string(name) + ": strides must be multiples of " + std::to_string(step) +
                                         " elements (16 bytes), got " + std::to_string(t.strides[d]) + " in dimension " +
                                         std::to_string(d));
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

  static size_t align256(size_t x) { return (x + 255) / 256 * 256; }

  DeviceInfo dev_;
  CudaConfig config_;
  LaunchChoice choice_;
  std::string why_;
  std::shared_ptr<CublasHandle> cublas_;
  size_t sched_bytes_ = 0;
  size_t qlat_bytes_ = 0;
  std::shared_ptr<WorkspacePool> pool_;
};

class CudaDevice final : public Device {
 public:
  CudaDevice(CudaConfig config, std::string name, DeviceInfo info)
      : config_(std::move(config)), name_(std::move(name)), info_(info),
        cublas_(std::make_shared<CublasHandle>(info.index)), merge_pool_(info.index) {}

  [[nodiscard]] std::string backend_name() const override { return "cuda"; }
  [[nodiscard]] std::string name() const override { return name_; }
  [[nodiscard]] std::string hardware_name() const override { return info_.prop.name; }
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
  // Context parallel (context/context_merge.cpp): the exchange the config names, through the
  // device's merge pool, all on the stream.
  void do_merge_context_parallel(const Problem& p, const TensorView& out, const TensorView& lse, Communicator& comm,
                                 void* stream) override {
    DeviceGuard guard(info_.index);
    merge_context_parallel_cuda(p, out, lse, comm, context_exchange(), merge_pool_, static_cast<cudaStream_t>(stream));
  }

  std::unique_ptr<Communicator> wrap_native_communicator(void* handle) override {
    return make_nccl_communicator(handle);
  }

  // One kernel for every format (write_kv/write_kv.cu), ordered on `stream`.
  void do_write_kv(const WriteKvArgs& a, void* stream, const WriteKvOptions& options) override {
    static_assert(static_cast<int>(WriteKvFormat::int8) == static_cast<int>(KvFormat::int8) &&
                  static_cast<int>(WriteKvFormat::fp8_ds_mla) == static_cast<int>(KvFormat::fp8_ds_mla) &&
                  static_cast<int>(WriteKvFormat::bf16) == static_cast<int>(KvFormat::bf16));
    static_assert(static_cast<int>(WriteKvSource::fp32) == static_cast<int>(DType::fp32) &&
                  static_cast<int>(WriteKvSource::fp16) == static_cast<int>(DType::fp16));
    DeviceGuard guard(info_.index);
    auto* s = static_cast<cudaStream_t>(stream);
    const int64_t tokens = a.slot_mapping.shape[0];
    if (options.validate_slots && tokens > 0) {
      std::vector<int64_t> slots(static_cast<size_t>(tokens));
      check(cudaMemcpyAsync(slots.data(), a.slot_mapping.data, slots.size() * sizeof(int64_t), cudaMemcpyDeviceToHost, s),
            "cudaMemcpyAsync (write_kv slots)");
      check(cudaStreamSynchronize(s), "cudaStreamSynchronize (write_kv slots)");
      validate_slots(a, slots.data());
    }
    if (tokens > INT32_MAX) fail(ErrorCode::unsupported, "cuda: write_kv of more than 2^31 - 1 tokens in one call");
    const size_t element = dtype_size(a.kv_cache.dtype);
    WriteKvParams p;
    p.format = static_cast<WriteKvFormat>(a.kv_format);
    p.source = static_cast<WriteKvSource>(a.kv_c.dtype);
    p.d_c = static_cast<int>(a.kv_c.shape[a.kv_c.rank - 1]);
    p.d_r = static_cast<int>(a.k_pe.shape[a.k_pe.rank - 1]);
    p.heads = static_cast<int>(a.kv_cache.shape[2]);
    p.tokens = tokens;
    p.kv_c = a.kv_c.data;
    p.kv_c_stride_token = a.kv_c.strides[0];
    p.kv_c_stride_head = a.kv_c.rank == 3 ? a.kv_c.strides[1] : 0;
    p.k_pe = a.k_pe.data;
    p.k_pe_stride_token = a.k_pe.strides[0];
    p.k_pe_stride_head = a.k_pe.rank == 3 ? a.k_pe.strides[1] : 0;
    p.slots = static_cast<const int64_t*>(a.slot_mapping.data);
    p.cache = a.kv_cache.data;
    p.cache_stride_block = a.kv_cache.strides[0] * static_cast<int64_t>(element);
    p.cache_stride_token = a.kv_cache.strides[1] * static_cast<int64_t>(element);
    p.cache_stride_head = a.kv_cache.strides[2] * static_cast<int64_t>(element);
    p.page_size = a.kv_cache.shape[1];
    p.kv_scale = static_cast<const float*>(a.kv_scale.data);
    launch_write_kv(p, s);
  }

  // Everything the problem alone decides (supports() asks this without making a plan).
  std::optional<std::string> do_unsupported_reason(const Problem& p) const override {
    if (p.dtype != DType::bf16 && p.dtype != DType::fp16)
      return std::string("cuda: dtype ") + dtype_name(p.dtype) + " is not supported (bf16 or fp16)";
    if (!is_quantized(p.kv_format) && p.kv().element != p.dtype)
      return std::string("cuda: the ") + kv_format_name(p.kv_format) + " KV format must match the query dtype " +
             dtype_name(p.dtype);
    if (p.d_c != pk::kDv || p.d_qk() != pk::kDqk)
      return "cuda: kernels are compiled for d_c = 512, d_r = 64; got d_c = " + std::to_string(p.d_c) +
             ", d_r = " + std::to_string(p.d_r);
    if (p.batch > (int64_t{1} << 24) || p.s_q * p.h_q > 65535)
      return std::string("cuda: batch above 2^24 or s_q * h_q above 65535 is not supported");
    if (p.max_blocks_per_seq * p.page_size > INT32_MAX)
      return std::string("cuda: sequences longer than 2^31 keys are not supported");
    std::string refusals;
    for (const KernelVariant* v : kernel_variants()) {
      const std::string no = v->refusal(p, info_);
      if (config_.kernel == v->config_name()) {
        if (no.empty()) return std::nullopt;
        return "cuda: config cuda.kernel = " + config_.kernel + ": unsupported: " + no;
      }
      if (config_.kernel == "auto" && no.empty()) return std::nullopt;
      refusals += (refusals.empty() ? "" : "; ") + std::string(v->config_name()) + ": " + no;
    }
    return "cuda: no kernel runs this problem here (" + refusals + ")";
  }

  // The first variant of the table that runs p (or the one the config names; supports() has
  // already refused what none runs), with the reasons the ones before it gave.
  std::unique_ptr<Plan> do_plan(const Problem& p) const override {
    DeviceGuard guard(info_.index);
    std::ostringstream why;
    std::string passed_over;
    for (const KernelVariant* v : kernel_variants()) {
      const bool named = config_.kernel == v->config_name();
      if (config_.kernel != "auto" && !named) continue;
      const std::string no = v->refusal(p, info_);
      if (!no.empty()) {
        passed_over += std::string(passed_over.empty() ? "" : ", ") + "not the " + v->config_name() + " kernel because " + no;
        continue;
      }
      LaunchChoice c = v->configure(p, info_, config_, why);
      why << "; " << (named ? "config cuda.kernel = " + config_.kernel
                            : "kernel = auto: " + (passed_over.empty() ? std::string("the shape fits it") : passed_over));
      why << " on " << info_.describe();
      if (p.variant == Variant::absorb)
        why << "; absorb variant: cuBLAS strided-batched GEMMs over heads (q_nope @ w_uk, o_latent @ w_uv, fp32 "
               "accumulation) around the latent kernel, latent query and o_latent in the schedule's workspace";
      return std::make_unique<CudaPlan>(p, info_, config_, c, why.str(), cublas_);
    }
    fail(ErrorCode::internal, "cuda: no kernel variant took a problem supports() accepted");
  }
  // cuBLAS bf16 tensor-core GEMMs need sm_80 or newer, as the portable kernel does.
  std::optional<double> do_measure_matmul_tflops() override {
    if (info_.prop.major < 8) return std::nullopt;
    DeviceGuard guard(info_.index);
    return cuda::measure_matmul_tflops(kCeilingMatmulN);  // qualified: Device has a member of that name
  }

 private:
  CudaConfig config_;
  std::string name_;
  DeviceInfo info_;
  std::shared_ptr<CublasHandle> cublas_;
  MergePool merge_pool_;  // the context-parallel merge's buffers
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
  f.description = "NVIDIA GPU backend: Hopper TMA + wgmma split-KV kernel (sm_90a), portable mma.sync kernel (sm_80+), cuBLAS absorb projections";
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
