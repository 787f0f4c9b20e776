#include "mla/backend.hpp"

#include <cmath>
#include <vector>

#include "mla/error.hpp"
#include "mla/logging.hpp"
#include "mla/validate.hpp"

namespace mla {

std::unique_ptr<Plan> Device::plan(const Problem& problem) const {
  validate_problem(problem);
  if (std::optional<std::string> reason = do_unsupported_reason(problem)) fail(ErrorCode::unsupported, *reason);
  auto plan = do_plan(problem);
  if (!plan) fail(ErrorCode::internal, backend_name() + ": do_plan returned no plan");
  plan->memory_space_ = memory_space();
  log_info(backend_name() + ": plan " + problem.describe() + " -> " + plan->kernel_name() + " (" + plan->explain() + ")");
  return plan;
}

Support Device::supports(const Problem& problem) const noexcept {
  try {
    validate_problem(problem);
    if (std::optional<std::string> reason = do_unsupported_reason(problem))
      return {false, ErrorCode::unsupported, std::move(*reason)};
    return {};
  } catch (const Error& e) {
    return {false, e.code(), e.what()};
  } catch (const std::exception& e) {
    return {false, ErrorCode::internal, e.what()};
  }
}

std::optional<std::string> Device::do_unsupported_reason(const Problem&) const { return std::nullopt; }

void Device::write_kv(const WriteKvArgs& args, void* stream, const WriteKvOptions& options) {
  validate_write_kv(args, memory_space());
  do_write_kv(args, stream, options);
}

void Device::merge_context_parallel(const Problem& problem, const TensorView& out, const TensorView& lse,
                                    Communicator& comm, void* stream) {
  validate_problem(problem);
  validate_outputs(problem, out, lse, memory_space());
  do_merge_context_parallel(problem, out, lse, comm, stream);
}

void Device::do_merge_context_parallel(const Problem&, const TensorView&, const TensorView&, Communicator&, void*) {
  fail(ErrorCode::unsupported, backend_name() + ": merge_context_parallel is not implemented by this backend");
}

std::unique_ptr<Communicator> Device::wrap_native_communicator(void*) {
  fail(ErrorCode::unsupported, backend_name() + ": no native communicator type; pass an mla::Communicator");
}

void Device::do_write_kv(const WriteKvArgs&, void*, const WriteKvOptions&) {
  fail(ErrorCode::unsupported, backend_name() + ": write_kv is not implemented by this backend");
}

std::optional<double> Device::measure_matmul_tflops() {
  const std::optional<double> tflops = do_measure_matmul_tflops();
  if (!tflops) return std::nullopt;
  if (!std::isfinite(*tflops) || *tflops <= 0)
    fail(ErrorCode::internal, backend_name() + ": matmul ceiling: expected a finite rate above 0 TFLOP/s, got " +
                                  std::to_string(*tflops));
  log_info(backend_name() + ": measured matmul ceiling " + std::to_string(*tflops) + " TFLOP/s");
  return tflops;
}

std::unique_ptr<Schedule> Plan::schedule(const TensorView& cache_seqlens, void* stream) const {
  validate_seqlens_tensor(problem_, cache_seqlens, memory_space_);
  auto made = do_schedule(cache_seqlens, stream);
  log_debug(backend_name() + ": schedule " + made->describe());
  return made;
}

RunResult Plan::run(const RunArgs& args, const Schedule& schedule, void* stream, const RunOptions& options) const {
  validate_args(problem_, args, memory_space_);
  if (options.validate_indices) check_indices(args, stream);
  RunResult result = do_run(args, schedule, stream);
  if (result.backend.empty()) result.backend = backend_name();
  if (result.kernel.empty()) result.kernel = kernel_name();
  return result;
}

void Plan::check_indices(const RunArgs& args, void* /*stream*/) const {
  if (args.cache_seqlens.space != MemorySpace::host || args.block_table.space != MemorySpace::host)
    fail(ErrorCode::internal, backend_name() + ": check_indices on device memory needs the backend's override");
  validate_indices(problem_, args.cache_seqlens.as<const int32_t>(), args.block_table.as<const int32_t>(),
                   args.block_table.strides[0]);
}

}  // namespace mla
