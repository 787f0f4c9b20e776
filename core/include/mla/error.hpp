// The one exception type of the C++ API: a code a program can branch on and a sentence a
// person can act on. Nothing in the library aborts the process on bad input.
#pragma once

#include <stdexcept>
#include <string>

namespace mla {

enum class ErrorCode : int {
  ok = 0,
  invalid_argument = 1,     // a tensor, shape, dtype or value does not meet the contract
  invalid_config = 2,       // a device config is malformed or out of range
  unsupported = 3,          // valid, but this backend/kernel does not implement it
  backend_unavailable = 4,  // the backend is compiled out or has no device
  out_of_memory = 5,        // host or device allocation failed, or a modelled memory is too small
  device_error = 6,         // the device runtime reported an error (its message is kept)
  io_error = 7,             // a file could not be read, written or parsed
  internal = 8,             // a bug in this library
};

const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  [[nodiscard]] ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

// Throws Error(code, message); kept out of line so call sites stay small.
[[noreturn]] void fail(ErrorCode code, const std::string& message);

}  // namespace mla
