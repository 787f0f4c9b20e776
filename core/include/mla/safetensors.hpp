// Reading and writing the safetensors format (8-byte header length, JSON header, raw data).
// Every malformed file is an Error(io_error) naming the file and the problem.
#pragma once

#include <map>
#include <string>

#include "mla/host_tensor.hpp"

namespace mla {

using TensorMap = std::map<std::string, HostTensor>;

TensorMap read_safetensors(const std::string& path);
TensorMap parse_safetensors(const std::string& bytes, const std::string& origin);  // origin names it in errors
// Writes atomically: to a temporary file, renamed into place only when complete.
void write_safetensors(const std::string& path, const TensorMap& tensors);

}  // namespace mla
