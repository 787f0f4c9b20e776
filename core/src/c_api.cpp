// The C ABI (mla/mla.h): each entry point checks its arguments, calls the C++ API and turns
// whatever it throws into a status. No logic of the operator lives here.
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "c_api_internal.hpp"
#include "mla/compare.hpp"
#include "mla/logging.hpp"
#include "mla/reference.hpp"

// The build passes the project() version; a header left behind on a version bump fails here.
#if defined(MLA_PROJECT_VERSION_MAJOR)
static_assert(MLA_VERSION_MAJOR == MLA_PROJECT_VERSION_MAJOR && MLA_VERSION_MINOR == MLA_PROJECT_VERSION_MINOR &&
                  MLA_VERSION_PATCH == MLA_PROJECT_VERSION_PATCH,
              "mla.h MLA_VERSION_* differs from the project version in CMakeLists.txt");
#endif

using namespace mla::c_api;

namespace {

#define MLA_STR2(x) #x
#define MLA_STR(x) MLA_STR2(x)
constexpr const char* kVersionString =
    MLA_STR(MLA_VERSION_MAJOR) "." MLA_STR(MLA_VERSION_MINOR) "." MLA_STR(MLA_VERSION_PATCH);

// The backend a config names, for error reports made before a device exists.
std::string backend_named_by(const nlohmann::json& config) {
  if (config.is_object() && config.contains("backend") && config["backend"].is_string())
    return config["backend"].get<std::string>();
  return "";
}

nlohmann::json parse_config_text(const char* text) {
  try {
    return mla::parse_json(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, out_of_range for numbers like 1e400, nesting
    mla::fail(mla::ErrorCode::invalid_config, std::string("config_json: not valid JSON: ") + e.what());
  }
}

const mla::c_api::PlanState& plan_state(const mla_plan* plan, const char* what) {
  require_pointer(plan, what);
  return *plan->state;
}

}  // namespace

extern "C" {

// ---- Version and small helpers --------------------------------------------------------

int32_t mla_version(void) { return MLA_VERSION; }

const char* mla_version_string(void) { return kVersionString; }

size_t mla_dtype_size(int32_t dtype) {
  if (dtype < MLA_DTYPE_BF16 || dtype > MLA_DTYPE_FP64) return 0;
  return mla::dtype_size(static_cast<mla::DType>(dtype));
}

mla_status* mla_set_log_level(const char* level) {
  return guarded("mla_set_log_level", [&](std::string&) {
    require_pointer(level, "level");
    mla::set_log_level(level);
  });
}

// ---- Backends ---------------------------------------------------------------------------

mla_status* mla_backend_list_create(mla_backend_list** out) {
  return guarded("mla_backend_list_create", [&](std::string&) {
    require_pointer(out, "out");
    *out = nullptr;
    auto list = std::make_unique<mla_backend_list>();
    list->entries = mla::list_backends();
    *out = list.release();
  });
}

size_t mla_backend_list_count(const mla_backend_list* list) { return list ? list->entries.size() : 0; }

mla_status* mla_backend_list_get(const mla_backend_list* list, size_t index, mla_backend_info* info) {
  return guarded("mla_backend_list_get", [&](std::string&) {
    require_pointer(list, "list");
    require_struct(info, info ? info->struct_size : 0, MLA_C_API_V1_SIZE(mla_backend_info, reason), "mla_backend_info");
    if (index >= list->entries.size())
      mla::fail(mla::ErrorCode::invalid_argument, "index " + std::to_string(index) + " is past the " +
                                                      std::to_string(list->entries.size()) + " backends");
    const mla::BackendInfo& entry = list->entries[index];
    info->name = entry.name.c_str();
    info->description = entry.description.c_str();
    info->available = entry.availability.available ? 1 : 0;
    info->reason = entry.availability.reason.c_str();
  });
}

void mla_backend_list_free(mla_backend_list* list) { delete list; }

// ---- Device -----------------------------------------------------------------------------

mla_status* mla_device_open(mla_device_open_args* args) {
  return guarded("mla_device_open", [&](std::string& backend) {
    require_struct(args, args ? args->struct_size : 0, MLA_C_API_V1_SIZE(mla_device_open_args, device),
                   "mla_device_open_args");
    args->device = nullptr;
    if (args->config_path && args->config_json)
      mla::fail(mla::ErrorCode::invalid_argument, "give config_path or config_json, not both");
    nlohmann::json config = args->config_path   ? mla::read_config_file(args->config_path)
                            : args->config_json ? parse_config_text(args->config_json)
                                                : mla::default_config();
    backend = backend_named_by(config);
    auto handle = std::make_unique<mla_device>();
    try {
      handle->device = mla::open_device(config);
    } catch (const mla::Error& e) {
      if (!args->config_path) throw;
      throw mla::Error(e.code(), std::string(args->config_path) + ": " + e.what());
    }
    handle->backend = handle->device->backend_name();
    handle->name = handle->device->name();
    args->device = handle.release();
  });
}

void mla_device_free(mla_device* device) { delete device; }

const char* mla_device_backend(const mla_device* device) { return device ? device->backend.c_str() : ""; }

const char* mla_device_name(const mla_device* device) { return device ? device->name.c_str() : ""; }

mla_memory_space mla_device_memory_space(const mla_device* device) {
  return device ? static_cast<mla_memory_space>(device->device->memory_space()) : MLA_MEMORY_HOST;
}

mla_status* mla_device_allocate(mla_allocate_args* args) {
  return guarded("mla_device_allocate", [&](std::string& backend) {
    require_struct(args, args ? args->struct_size : 0, MLA_C_API_V1_SIZE(mla_allocate_args, ptr), "mla_allocate_args");
    args->ptr = nullptr;
    require_pointer(args->device, "device");
    backend = args->device->backend;
    args->ptr = args->device->device->allocate(args->bytes);
  });
}

void mla_device_deallocate(mla_device* device, void* ptr) {
  if (device && ptr) device->device->deallocate(ptr);
}

mla_status* mla_device_copy(const mla_copy_args* args) {
  return guarded("mla_device_copy", [&](std::string& backend) {
    require_struct(args, args ? args->struct_size : 0, MLA_C_API_V1_SIZE(mla_copy_args, stream), "mla_copy_args");
    require_pointer(args->device, "device");
    backend = args->device->backend;
    if (args->kind < MLA_COPY_HOST_TO_DEVICE || args->kind > MLA_COPY_DEVICE_TO_DEVICE)
      mla::fail(mla::ErrorCode::invalid_argument, "kind: expected an mla_copy_kind, got " + std::to_string(args->kind));
    args->device->device->copy(args->dst, args->src, args->bytes, static_cast<mla::CopyKind>(args->kind), args->stream);
  });
}

mla_status* mla_device_synchronize(mla_device* device, void* stream) {
  return guarded("mla_device_synchronize", [&](std::string& backend) {
    require_pointer(device, "device");
    backend = device->backend;
    device->device->synchronize(stream);
  });
}

// ---- Tensors and problems ---------------------------------------------------------------

mla_tensor mla_tensor_contiguous(void* data, int32_t dtype, int32_t rank, const int64_t* shape, int32_t space) {
  mla_tensor t{};
  if (rank < 1 || rank > MLA_MAX_RANK || !shape) return t;
  t.data = data;
  t.dtype = dtype;
  t.rank = rank;
  t.space = space;
  int64_t stride = 1;
  for (int d = rank - 1; d >= 0; --d) {
    t.shape[d] = shape[d];
    t.strides[d] = stride;
    stride *= shape[d];
  }
  return t;
}

void mla_problem_init_sized(mla_problem* problem, size_t struct_size) {
  if (!problem) return;
  mla_problem full = from_problem(mla::Problem{});
  full.kv_format = MLA_KV_FORMAT_FROM_DTYPE;  // so a caller that sets only kv_dtype gets that format
  // An older caller's struct is shorter: write only what it holds (the 0.1 struct ends at
  // kv_scale_tile), and say so in its struct_size.
  std::memcpy(problem, &full, struct_size < sizeof full ? struct_size : sizeof full);
  if (struct_size >= sizeof problem->struct_size) problem->struct_size = struct_size;
}

// Parenthesised: the header's function-like macro of the same name does not apply here.
void(mla_problem_init)(mla_problem* problem) {
  mla_problem_init_sized(problem, MLA_C_API_V1_SIZE(mla_problem, kv_scale_tile));
}

mla_status* mla_device_supports(mla_supports_args* args) {
  return guarded("mla_device_supports", [&](std::string& backend) {
    require_struct(args, args ? args->struct_size : 0, MLA_C_API_V1_SIZE(mla_supports_args, reason_size),
                   "mla_supports_args");
    args->supported = 0;
    args->code = MLA_OK;
    args->reason_size = 0;
    require_pointer(args->device, "device");
    backend = args->device->backend;
    require_struct(args->problem, args->problem ? args->problem->struct_size : 0,
                   MLA_C_API_V1_SIZE(mla_problem, kv_scale_tile), "mla_problem");  // a bad struct is an error
    mla::Support support;
    try {
      support = args->device->device->supports(read_problem(args->problem));
    } catch (const mla::Error& e) {  // a field the conversion rejects is an answer too
      support = {false, e.code(), e.what()};
    }
    args->supported = support.supported ? 1 : 0;
    args->code = static_cast<int32_t>(support.code);
    args->reason_size = copy_to_buffer(support.reason, args->reason, args->reason_capacity);
  });
}

// ---- Plan -------------------------------------------------------------------------------

mla_status* mla_plan_create(mla_plan_create_args* args) {
  return guarded("mla_plan_create", [&](std::string& backend) {
    require_struct(args, args ? args->struct_size : 0, MLA_C_API_V1_SIZE(mla_plan_create_args, plan),
                   "mla_plan_create_args");
    args->plan = nullptr;
    require_pointer(args->device, "device");
    backend = args->device->backend;
    mla::Problem problem = read_problem(args->problem);

    auto state = std::make_shared<PlanState>();
    state->device = args->device->device;
    state->plan = state->device->plan(problem);
    state->backend = state->plan->backend_name();
    state->kernel = state->plan->kernel_name();
    state->explain = state->plan->explain();
    state->workspace_bytes = state->plan->workspace_bytes();
    args->plan = new mla_plan{std::move(state)};
  });
}

void mla_plan_free(mla_plan* plan) { delete plan; }

const char* mla_plan_backend(const mla_plan* plan) { return plan ? plan->state->backend.c_str() : ""; }

const char* mla_plan_kernel_name(const mla_plan* plan) { return plan ? plan->state->kernel.c_str() : ""; }

const char* mla_plan_explain(const mla_plan* plan) { return plan ? plan->state->explain.c_str() : ""; }

size_t mla_plan_workspace_bytes(const mla_plan* plan) { return plan ? plan->state->workspace_bytes : 0; }

mla_status* mla_plan_get_problem(const mla_plan* plan, mla_problem* problem) {
  return guarded("mla_plan_get_problem", [&](std::string& backend) {
    const PlanState& state = plan_state(plan, "plan");
    backend = state.backend;
    require_struct(problem, problem ? problem->struct_size : 0, MLA_C_API_V1_SIZE(mla_problem, kv_scale_tile),
                   "mla_problem");
    // Write only as far as the caller's struct reaches.
    mla_problem full = from_problem(state.plan->problem());
    const size_t caller_size = problem->struct_size;
    std::memcpy(problem, &full, caller_size < sizeof full ? caller_size : sizeof full);
    problem->struct_size = caller_size;
  });
}

// ---- Schedule and run -------------------------------------------------------------------

mla_status* mla_schedule_create(mla_schedule_create_args* args) {
  return guarded("mla_schedule_create", [&](std::string& backend) {
    require_struct(args, args ? args->struct_size : 0, MLA_C_API_V1_SIZE(mla_schedule_create_args, schedule),
                   "mla_schedule_create_args");
    args->schedule = nullptr;
    const PlanState& state = plan_state(args->plan, "plan");
    backend = state.backend;
    auto handle = std::make_unique<mla_schedule>();
    handle->plan = args->plan->state;
    handle->schedule = state.plan->schedule(to_view(args->cache_seqlens, "cache_seqlens"), args->stream);
    handle->description = handle->schedule->describe();
    args->schedule = handle.release();
  });
}

void mla_schedule_free(mla_schedule* schedule) { delete schedule; }

const char* mla_schedule_describe(const mla_schedule* schedule) {
  return schedule ? schedule->description.c_str() : "";
}

mla_status* mla_run(mla_run_args* args) {
  return guarded("mla_run", [&](std::string& backend) {
    require_struct(args, args ? args->struct_size : 0, MLA_C_API_V1_SIZE(mla_run_args, report_json_size),
                   "mla_run_args");
    const PlanState& state = plan_state(args->plan, "plan");
    backend = state.backend;
    require_pointer(args->schedule, "schedule");
    if (args->schedule->plan != args->plan->state)
      mla::fail(mla::ErrorCode::invalid_argument, "schedule: it was made by another plan");
    require_struct(args->tensors, args->tensors ? args->tensors->struct_size : 0,
                   MLA_C_API_V1_SIZE(mla_tensors, lse), "mla_tensors");
    mla::RunArgs run_args = to_run_args(read_struct(*args->tensors, mla_tensors{}));
    mla::RunOptions options;
    options.validate_indices = args->validate_indices != 0;
    mla::RunResult result = state.plan->run(run_args, *args->schedule->schedule, args->stream, options);
    args->seconds = result.seconds;
    args->simulated = result.simulated ? 1 : 0;
    args->report_json_size = copy_to_buffer(result.report_json, args->report_json, args->report_json_capacity);
  });
}

// ---- Writing the cache ------------------------------------------------------------------

mla_status* mla_write_kv(mla_write_kv_args* args) {
  return guarded("mla_write_kv", [&](std::string& backend) {
    require_struct(args, args ? args->struct_size : 0, MLA_C_API_V1_SIZE(mla_write_kv_args, validate_slots),
                   "mla_write_kv_args");
    require_pointer(args->device, "device");
    backend = args->device->backend;
    mla::WriteKvArgs w;
    w.kv_format = to_kv_format(args->kv_format, "kv_format");
    w.kv_c = to_view(args->kv_c, "kv_c");
    w.k_pe = to_view(args->k_pe, "k_pe");
    w.slot_mapping = to_view(args->slot_mapping, "slot_mapping");
    w.kv_cache = to_view(args->kv_cache, "kv_cache");
    w.kv_scale = to_view(args->kv_scale, "kv_scale");
    mla::WriteKvOptions options;
    options.validate_slots = args->validate_slots != 0;
    args->device->device->write_kv(w, args->stream, options);
  });
}

// ---- Context parallelism ----------------------------------------------------------------

mla_status* mla_merge_context_parallel(mla_context_merge_args* args) {
  return guarded("mla_merge_context_parallel", [&](std::string& backend) {
    require_struct(args, args ? args->struct_size : 0, MLA_C_API_V1_SIZE(mla_context_merge_args, stream),
                   "mla_context_merge_args");
    const PlanState& state = plan_state(args->plan, "plan");
    backend = state.backend;
    require_pointer(args->communicator, "communicator");
    std::unique_ptr<mla::Communicator> comm = state.device->wrap_native_communicator(args->communicator);
    state.device->merge_context_parallel(state.plan->problem(), to_view(args->out, "out"), to_view(args->lse, "lse"),
                                         *comm, args->stream);
  });
}

// ---- Checking results -------------------------------------------------------------------

mla_status* mla_reference_check(mla_reference_check_args* args) {
  return guarded("mla_reference_check", [&](std::string& backend) {
    require_struct(args, args ? args->struct_size : 0, MLA_C_API_V1_SIZE(mla_reference_check_args, summary_capacity),
                   "mla_reference_check_args");
    args->passed = 0;
    const PlanState& state = plan_state(args->plan, "plan");
    backend = state.backend;
    require_struct(args->tensors, args->tensors ? args->tensors->struct_size : 0,
                   MLA_C_API_V1_SIZE(mla_tensors, lse), "mla_tensors");
    const mla::Problem& problem = state.plan->problem();
    mla::RunArgs run_args = to_run_args(read_struct(*args->tensors, mla_tensors{}));
    mla::ReferenceOutput reference = mla::reference_decode(problem, run_args);
    mla::Comparison c = mla::compare_to_reference(problem, reference, run_args.out, run_args.lse);
    args->passed = c.passed ? 1 : 0;
    args->max_abs_error = c.max_abs_error;
    args->rel_l2_error = c.rel_l2_error;
    args->cosine_distance = c.cosine_distance;
    args->lse_max_abs_error = c.lse_max_abs_error;
    args->nonfinite_mismatches = c.nonfinite_mismatches;
    copy_to_buffer(c.summary(), args->summary, args->summary_capacity);
  });
}

}  // extern "C"
