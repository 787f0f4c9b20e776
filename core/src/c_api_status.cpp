// Status objects of the C ABI, and the argument checks that produce most of them.
#include <algorithm>

#include "c_api_internal.hpp"

namespace mla::c_api {

namespace {
// Returned when a status cannot be allocated: the caller's mla_status_free leaves it alone.
mla_status out_of_memory_status{MLA_ERROR_OUT_OF_MEMORY, "out of host memory (while reporting an error)", "", true};
}  // namespace

mla_status* make_status(mla_status_code code, const std::string& message, const std::string& backend) noexcept {
  try {
    return new mla_status{code, message, backend, false};
  } catch (...) {
    return &out_of_memory_status;
  }
}

void require_pointer(const void* pointer, const char* what) {
  if (!pointer) fail(ErrorCode::invalid_argument, std::string(what) + " is NULL");
}

void require_struct(const void* args, size_t struct_size, size_t v1_size, const char* type) {
  if (!args) fail(ErrorCode::invalid_argument, std::string("the ") + type + " pointer is NULL");
  if (struct_size < v1_size)
    fail(ErrorCode::invalid_argument, std::string(type) + ".struct_size is " + std::to_string(struct_size) +
                                          ", expected at least " + std::to_string(v1_size) +
                                          " (set it to sizeof(" + type + "))");
}

size_t copy_to_buffer(const std::string& text, char* buffer, size_t capacity) {
  if (buffer && capacity > 0) {
    size_t n = std::min(text.size(), capacity - 1);
    std::memcpy(buffer, text.data(), n);
    buffer[n] = '\0';
  }
  return text.size();
}

}  // namespace mla::c_api

extern "C" {

mla_status_code mla_status_get_code(const mla_status* status) { return status ? status->code : MLA_OK; }

const char* mla_status_message(const mla_status* status) { return status ? status->message.c_str() : ""; }

const char* mla_status_backend(const mla_status* status) { return status ? status->backend.c_str() : ""; }

const char* mla_status_code_name(mla_status_code code) {
  if (code < MLA_OK || code > MLA_ERROR_INTERNAL) return "unknown";
  return mla::error_code_name(static_cast<mla::ErrorCode>(code));
}

void mla_status_free(mla_status* status) {
  if (status && !status->preallocated) delete status;
}

}  // extern "C"
