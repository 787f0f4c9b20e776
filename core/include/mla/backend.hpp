// The backend-neutral object ladder: Device (opened from a config) -> Plan (once per shape)
// -> Schedule (once per decode step) -> run (once per layer).
//
// The public entry points are non-virtual: they validate, then call the backend's do_*
// hook, so every backend gets the same checks and the same error messages.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "mla/context_parallel.hpp"
#include "mla/error.hpp"
#include "mla/kv_cache.hpp"
#include "mla/problem.hpp"
#include "mla/tensor.hpp"

namespace mla {

// What a run did. Every result names the backend and the kernel that produced it.
struct RunResult {
  std::string backend;
  std::string kernel;
  double seconds = -1.0;    // time of the run when the backend knows it (simulated or measured)
  bool simulated = false;   // true when `seconds` comes from a timing model
  std::string report_json;  // backend-specific details (engine busy times, strategy, ...)
};

// Per-step work partition. Owns the step's workspace (split-KV partials), so a schedule must
// not be used by two runs at the same time; runs of one step, one after another, share it.
class Schedule {
 public:
  virtual ~Schedule() = default;
  [[nodiscard]] virtual std::string describe() const = 0;
};

// Controls that cost time and therefore are off by default.
struct RunOptions {
  // Read cache_seqlens and block_table and check every used block id is in range. On a
  // device backend this copies them to the host and synchronises.
  bool validate_indices = false;
};

class Plan {
 public:
  virtual ~Plan() = default;
  [[nodiscard]] const Problem& problem() const { return problem_; }
  // The memory every tensor of schedule() and run() must be in: the device's.
  [[nodiscard]] MemorySpace memory_space() const { return memory_space_; }
  [[nodiscard]] virtual std::string backend_name() const = 0;
  [[nodiscard]] virtual std::string kernel_name() const = 0;
  // Why this kernel was chosen (and others were not): one or a few lines.
  [[nodiscard]] virtual std::string explain() const = 0;
  // Bytes of workspace one Schedule of this plan holds at most.
  [[nodiscard]] virtual size_t workspace_bytes() const = 0;

  // Partitions one step's work from cache_seqlens (int32 [b], in the device's memory).
  // Device backends do not synchronise; host backends read the lengths and check them.
  std::unique_ptr<Schedule> schedule(const TensorView& cache_seqlens, void* stream = nullptr) const;

  // Computes out and lse. Asynchronous on device backends (ordered on `stream`); blocking on
  // host backends. `schedule` must come from this plan for the lengths in args.cache_seqlens.
  RunResult run(const RunArgs& args, const Schedule& schedule, void* stream = nullptr,
                const RunOptions& options = {}) const;

 protected:
  explicit Plan(Problem problem) : problem_(std::move(problem)) {}
  virtual std::unique_ptr<Schedule> do_schedule(const TensorView& cache_seqlens, void* stream) const = 0;
  virtual RunResult do_run(const RunArgs& args, const Schedule& schedule, void* stream) const = 0;
  // Host copies of lengths and block table for validate_indices; host backends return views.
  virtual void check_indices(const RunArgs& args, void* stream) const;

 private:
  friend class Device;  // records the device's memory space on the plans it makes
  Problem problem_;
  MemorySpace memory_space_ = MemorySpace::host;
};

// The answer of Device::supports: yes, or the code and reason plan() would throw.
struct Support {
  bool supported = true;
  ErrorCode code = ErrorCode::ok;
  std::string reason;
  explicit operator bool() const { return supported; }
};

enum class CopyKind : int { host_to_device = 0, device_to_host = 1, device_to_device = 2 };

class Device {
 public:
  virtual ~Device() = default;
  [[nodiscard]] virtual std::string backend_name() const = 0;
  [[nodiscard]] virtual std::string name() const = 0;  // the config's "name"
  // (optional) The hardware as its driver names it (the cuda backend: "NVIDIA H200"), which
  // the config's free-text `name` need not match: a tool that keeps per-GPU reference figures
  // asks this. Empty (the default) for host and simulated devices.
  [[nodiscard]] virtual std::string hardware_name() const { return {}; }
  [[nodiscard]] virtual MemorySpace memory_space() const = 0;

  // Validates the problem, then asks the backend for a plan. Throws Error(unsupported) with
  // the reason when the backend cannot run this shape.
  std::unique_ptr<Plan> plan(const Problem& problem) const;
  // Whether plan(problem) would succeed, without throwing and without making a plan: the
  // problem's validation error (invalid_argument) or the backend's refusal (unsupported).
  [[nodiscard]] Support supports(const Problem& problem) const noexcept;

  // Quantizes T new tokens into their cache slots (mla/kv_cache.hpp): what a runtime calls once
  // per layer per step before run(). Host backends: complete on return, every slot checked
  // before anything is written. Device backends: ordered on `stream`.
  void write_kv(const WriteKvArgs& args, void* stream = nullptr, const WriteKvOptions& options = {});

  // Context parallelism (docs/context-parallel.md): after this rank ran `problem` over its
  // shard, merges every rank's partial out / lse through `comm` so each rank holds the full
  // result, exchanging them the context_exchange() way. Host backends: blocking. Device
  // backends: ordered on `stream` (capturable when the communicator's collectives are).
  void merge_context_parallel(const Problem& problem, const TensorView& out, const TensorView& lse, Communicator& comm,
                              void* stream = nullptr);
  // The exchange merge_context_parallel uses: the config's `context_parallel.exchange`
  // (all_gather unless it says otherwise). Every rank of a group must use the same one.
  [[nodiscard]] ContextExchange context_exchange() const { return context_exchange_; }
  // The backend's own communicator type wrapped as an mla::Communicator (cuda: an ncclComm_t,
  // NCCL loaded at run time). The handle stays the caller's. Error(unsupported) where there is none.
  [[nodiscard]] virtual std::unique_ptr<Communicator> wrap_native_communicator(void* handle);

  // Memory in this device's space (host memory for host backends). 256-byte aligned.
  [[nodiscard]] virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr) noexcept = 0;
  virtual void copy(void* dst, const void* src, size_t bytes, CopyKind kind, void* stream = nullptr) = 0;
  virtual void synchronize(void* stream = nullptr) = 0;

  // This device's measured dense bf16 matmul rate (TFLOP/s), the compute ceiling a benchmark
  // reports its FLOP/s against; nullopt when the backend cannot measure one. Measured anew on
  // every call (it blocks while it times a large GEMM), so call it while nothing else runs on
  // the device. Error(internal) if the backend's figure is not a finite rate above 0.
  [[nodiscard]] std::optional<double> measure_matmul_tflops();

 protected:
  virtual std::unique_ptr<Plan> do_plan(const Problem& problem) const = 0;
  // Why this backend cannot run a valid problem, or nullopt. plan() asks it before do_plan,
  // so do_plan only sees supported problems. The default supports everything.
  [[nodiscard]] virtual std::optional<std::string> do_unsupported_reason(const Problem& problem) const;
  // merge_context_parallel on validated out / lse. The default refuses (Error(unsupported)).
  virtual void do_merge_context_parallel(const Problem& problem, const TensorView& out, const TensorView& lse,
                                         Communicator& comm, void* stream);
  // write_kv on validated arguments. The default refuses (Error(unsupported)).
  virtual void do_write_kv(const WriteKvArgs& args, void* stream, const WriteKvOptions& options);
  // (optional) The measurement behind measure_matmul_tflops; the default measures nothing.
  virtual std::optional<double> do_measure_matmul_tflops() { return std::nullopt; }

 private:
  // Sets the config's settings that every backend shares (context_exchange_).
  friend std::unique_ptr<Device> open_device(const nlohmann::json& config);
  ContextExchange context_exchange_ = ContextExchange::all_gather;
};

}  // namespace mla
