#include "mla/safetensors.hpp"

#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mla/error.hpp"
#include "mla/file_io.hpp"

namespace mla {

namespace {

struct DTypeName {
  DType dtype;
  const char* name;
};
constexpr DTypeName kNames[] = {{DType::bf16, "BF16"}, {DType::fp16, "F16"},     {DType::fp32, "F32"},
                                 {DType::fp64, "F64"},  {DType::int32, "I32"},   {DType::int64, "I64"},
                                 {DType::int8, "I8"},   {DType::fp8_e4m3, "F8_E4M3"}};

const char* st_name(DType d) {
  for (const auto& n : kNames)
    if (n.dtype == d) return n.name;
  return nullptr;
}

[[noreturn]] void corrupt(const std::string& origin, const std::string& why) {
  fail(ErrorCode::io_error, origin + ": not a valid safetensors file: " + why);
}

constexpr uint64_t kMaxHeader = 100u << 20;  // what the reference implementation accepts

}  // namespace

TensorMap parse_safetensors(const std::string& bytes, const std::string& origin) {
  if (bytes.size() < 8) corrupt(origin, "shorter than the 8-byte header length (" + std::to_string(bytes.size()) + " bytes)");
  uint64_t header_len = 0;
  for (int k = 7; k >= 0; --k) header_len = (header_len << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(k)]);
  if (header_len > kMaxHeader || header_len > bytes.size() - 8)
    corrupt(origin, "header length " + std::to_string(header_len) + " exceeds the file (" + std::to_string(bytes.size()) +
                        " bytes)");
  nlohmann::json header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<long>(header_len), nullptr, false);
  if (header.is_discarded() || !header.is_object()) corrupt(origin, "header is not a JSON object");
  const uint64_t data_len = bytes.size() - 8 - header_len;
  const char* data = bytes.data() + 8 + header_len;
  TensorMap out;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const std::string& name = it.key();
    const auto& entry = it.value();
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets") ||
        !entry["dtype"].is_string() || !entry["shape"].is_array() || !entry["data_offsets"].is_array() ||
        entry["data_offsets"].size() != 2)
      corrupt(origin, "tensor \"" + name + "\" needs dtype, shape and data_offsets [begin, end]");
    std::string dname = entry["dtype"].get<std::string>();
    const DTypeName* found = nullptr;
    for (const auto& n : kNames)
      if (dname == n.name) found = &n;
    if (!found) corrupt(origin, "tensor \"" + name + "\" has unsupported dtype \"" + dname + "\"");
    std::vector<int64_t> shape;
    uint64_t numel = 1;
    for (const auto& extent : entry["shape"]) {
      if (!extent.is_number_unsigned() || extent.get<uint64_t>() > (1ull << 40))
        corrupt(origin, "tensor \"" + name + "\" has an invalid shape " + entry["shape"].dump());
      shape.push_back(extent.get<int64_t>());
      numel *= extent.get<uint64_t>();
      if (numel > (1ull << 40)) corrupt(origin, "tensor \"" + name + "\" is impossibly large");
    }
    if (shape.size() > static_cast<size_t>(kMaxRank))
      corrupt(origin, "tensor \"" + name + "\" has rank " + std::to_string(shape.size()) + " (at most 4 supported)");
    const auto& offs = entry["data_offsets"];
    if (!offs[0].is_number_unsigned() || !offs[1].is_number_unsigned())
      corrupt(origin, "tensor \"" + name + "\" has non-integer data_offsets");
    uint64_t begin = offs[0].get<uint64_t>(), end = offs[1].get<uint64_t>();
    uint64_t expected = numel * dtype_size(found->dtype);
    if (begin > end || end > data_len)
      corrupt(origin, "tensor \"" + name + "\" data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                          "] fall outside the " + std::to_string(data_len) + "-byte data section (truncated file?)");
    if (end - begin != expected)
      corrupt(origin, "tensor \"" + name + "\" holds " + std::to_string(end - begin) + " bytes, its dtype and shape need " +
                          std::to_string(expected));
    HostTensor t(found->dtype, shape);
    if (expected) std::memcpy(t.data(), data + begin, expected);
    out.emplace(name, std::move(t));
  }
  return out;
}

TensorMap read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorCode::io_error, "cannot open \"" + path + "\"");
  std::stringstream buffer;
  buffer << in.rdbuf();
  return parse_safetensors(buffer.str(), path);
}

void write_safetensors(const std::string& path, const TensorMap& tensors) {
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    const char* dname = st_name(t.view().dtype);
    if (!dname) fail(ErrorCode::invalid_argument, "safetensors: cannot store dtype " + std::string(dtype_name(t.view().dtype)));
    nlohmann::json shape = nlohmann::json::array();
    for (int d = 0; d < t.view().rank; ++d) shape.push_back(t.view().shape[d]);
    header[name] = {{"dtype", dname}, {"shape", shape}, {"data_offsets", {offset, offset + t.bytes()}}};
    offset += t.bytes();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data 8-byte aligned
  write_file_atomically(path, [&](std::ostream& out) {
    const uint64_t n = text.size();
    char len[8];
    for (int k = 0; k < 8; ++k) len[k] = static_cast<char>((n >> (8 * k)) & 0xff);
    out.write(len, 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& [name, t] : tensors) out.write(static_cast<const char*>(t.data()), static_cast<std::streamsize>(t.bytes()));
  });
}

}  // namespace mla
