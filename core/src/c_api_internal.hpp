// What the C ABI's opaque handles hold, and the helpers every entry point of c_api.cpp uses:
// the exception guard, struct_size checks and the C <-> C++ conversions.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "mla/backend.hpp"
#include "mla/error.hpp"
#include "mla/mla.h"
#include "mla/registry.hpp"

struct mla_status {
  mla_status_code code = MLA_OK;
  std::string message;
  std::string backend;
  bool preallocated = false;  // the out-of-memory status: never freed
};

struct mla_backend_list {
  std::vector<mla::BackendInfo> entries;
};

// The handles share ownership of what they point to, so that a plan keeps its device alive
// and a schedule its plan, whatever order the caller frees them in.
struct mla_device {
  std::shared_ptr<mla::Device> device;
  std::string backend;
  std::string name;
};

namespace mla::c_api {

// Everything fixed about a plan, computed once so that the accessors cannot throw.
struct PlanState {
  std::shared_ptr<Device> device;
  std::unique_ptr<Plan> plan;
  std::string backend;
  std::string kernel;
  std::string explain;
  size_t workspace_bytes = 0;
};

}  // namespace mla::c_api

struct mla_plan {
  std::shared_ptr<const mla::c_api::PlanState> state;
};

struct mla_schedule {
  std::shared_ptr<const mla::c_api::PlanState> plan;
  std::unique_ptr<mla::Schedule> schedule;
  std::string description;
};

namespace mla::c_api {

// A status for the caller, or the preallocated out-of-memory one when even that fails.
mla_status* make_status(mla_status_code code, const std::string& message, const std::string& backend) noexcept;

// Runs `body`, turning every exception into a status: no exception crosses the C boundary.
// `body` receives the backend name to report, which it fills in once it knows it.
template <typename Body>
mla_status* guarded(const char* function, Body&& body) noexcept {
  std::string backend;
  try {
    body(backend);
    return nullptr;
  } catch (const Error& e) {
    return make_status(static_cast<mla_status_code>(e.code()), std::string(function) + ": " + e.what(), backend);
  } catch (const std::bad_alloc&) {
    return make_status(MLA_ERROR_OUT_OF_MEMORY, std::string(function) + ": out of host memory", backend);
  } catch (const std::exception& e) {
    return make_status(MLA_ERROR_INTERNAL, std::string(function) + ": unexpected exception: " + e.what(), backend);
  } catch (...) {
    return make_status(MLA_ERROR_INTERNAL, std::string(function) + ": unexpected exception of unknown type", backend);
  }
}

// Throws invalid_argument when `pointer` is null.
void require_pointer(const void* pointer, const char* what);

// The size of the first published version of an argument struct: fields up to and including
// `last`. Fields appended later are read only when struct_size covers them.
#define MLA_C_API_V1_SIZE(type, last) (offsetof(type, last) + sizeof(((type*)nullptr)->last))

// Throws invalid_argument unless `args` is non-null and its struct_size covers version 1.
void require_struct(const void* args, size_t struct_size, size_t v1_size, const char* type);

// Copies the caller's struct over `defaults`, as far as the caller's struct_size reaches, so
// fields an older caller does not know keep their defaults.
template <typename T>
T read_struct(const T& user, T defaults) {
  std::memcpy(&defaults, &user, user.struct_size < sizeof(T) ? user.struct_size : sizeof(T));
  defaults.struct_size = sizeof(T);
  return defaults;
}

// Copies `text` into a caller buffer, truncated and NUL-terminated. Returns text.size().
size_t copy_to_buffer(const std::string& text, char* buffer, size_t capacity);

// Conversions. Each throws invalid_argument naming the field when an enum value is unknown.
TensorView to_view(const mla_tensor& tensor, const char* name);
RunArgs to_run_args(const mla_tensors& tensors);
Problem to_problem(const mla_problem& problem);
// A caller's mla_problem of any published size: struct_size checked, missing fields defaulted.
Problem read_problem(const mla_problem* problem);
// An mla_kv_format value that names a format (not MLA_KV_FORMAT_FROM_DTYPE); `field` names it in errors.
KvFormat to_kv_format(int32_t value, const std::string& field);
mla_problem from_problem(const Problem& problem);

}  // namespace mla::c_api
