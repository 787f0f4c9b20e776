// Reading and writing the safetensors format (8-byte header length, JSON header, raw data).
// Every malformed file is an Error(io_error) naming the file and the problem: tensors that
// overlap, offsets outside the data, byte counts that do not match the shape, a header over
// 100 MiB. Reading is bounded: a regular file by its size, a stream by what its header
// declares, and both by `max_data_bytes` (Error(out_of_memory) past it).
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <ostream>
#include <string>

#include "mla/host_tensor.hpp"

namespace mla {

using TensorMap = std::map<std::string, HostTensor>;
// The header's "__metadata__": free-form string pairs (mla records the problem's flags there).
using Metadata = std::map<std::string, std::string>;

struct SafetensorsFile {
  TensorMap tensors;
  Metadata metadata;
};

SafetensorsFile read_safetensors_file(const std::string& path,
                                      uint64_t max_data_bytes = std::numeric_limits<uint64_t>::max());
TensorMap read_safetensors(const std::string& path);  // tensors only, no data limit
// The same checks on bytes already in memory; `origin` names them in errors.
SafetensorsFile parse_safetensors_file(const std::string& bytes, const std::string& origin);
TensorMap parse_safetensors(const std::string& bytes, const std::string& origin);

// The file's bytes, in the order of the names.
void write_safetensors(std::ostream& out, const TensorMap& tensors, const Metadata& metadata = {});
// Writes by the output-file rules (mla/output_file.hpp): staged, then renamed into place.
void write_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata = {});

}  // namespace mla
