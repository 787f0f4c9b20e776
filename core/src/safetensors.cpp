#include "mla/safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include <nlohmann/json.hpp>

#include "mla/error.hpp"
#include "mla/input_file.hpp"
#include "mla/memory.hpp"
#include "mla/output_file.hpp"

namespace mla {

namespace {

struct DTypeName {
  DType dtype;
  const char* name;
};
constexpr DTypeName kNames[] = {{DType::bf16, "BF16"}, {DType::fp16, "F16"},     {DType::fp32, "F32"},
                                 {DType::fp64, "F64"},  {DType::int32, "I32"},   {DType::int64, "I64"},
                                 {DType::int8, "I8"},   {DType::fp8_e4m3, "F8_E4M3"},
                                 {DType::uint8, "U8"}};

const char* st_name(DType d) {
  for (const auto& n : kNames)
    if (n.dtype == d) return n.name;
  return nullptr;
}

[[noreturn]] void corrupt(const std::string& origin, const std::string& why) {
  fail(ErrorCode::io_error, origin + ": not a valid safetensors file: " + why);
}

constexpr uint64_t kMaxHeader = 100u << 20;  // what the reference implementation accepts
constexpr uint64_t kUnknown = std::numeric_limits<uint64_t>::max();

struct Entry {
  std::string name;
  DType dtype = DType::fp32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};

struct Header {
  std::vector<Entry> entries;  // sorted by begin
  Metadata metadata;
  uint64_t data_end = 0;       // the largest end offset
  uint64_t data_bytes = 0;     // the sum of the tensors' sizes
};

uint64_t header_length(const unsigned char* bytes) {
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = (n << 8) | bytes[k];
  return n;
}

// Checks every entry of the JSON header. `data_len` is the size of the data section, or
// kUnknown for a stream (whose data is then bounded by what the header declares).
Header parse_header(const char* text, size_t length, uint64_t data_len, const std::string& origin) {
  nlohmann::json header = nlohmann::json::parse(text, text + length, nullptr, false);
  if (header.is_discarded() || !header.is_object()) corrupt(origin, "header is not a JSON object");
  Header h;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const auto& entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) corrupt(origin, "__metadata__ must be an object of strings");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string()) corrupt(origin, "__metadata__ value \"" + m.key() + "\" is not a string");
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets") ||
        !entry["dtype"].is_string() || !entry["shape"].is_array() || !entry["data_offsets"].is_array() ||
        entry["data_offsets"].size() != 2)
      corrupt(origin, "tensor \"" + name + "\" needs dtype, shape and data_offsets [begin, end]");
    std::string dname = entry["dtype"].get<std::string>();
    const DTypeName* found = nullptr;
    for (const auto& n : kNames)
      if (dname == n.name) found = &n;
    if (!found) corrupt(origin, "tensor \"" + name + "\" has unsupported dtype \"" + dname + "\"");
    Entry e;
    e.name = name;
    e.dtype = found->dtype;
    uint64_t numel = 1;
    for (const auto& extent : entry["shape"]) {
      if (!extent.is_number_unsigned() || extent.get<uint64_t>() > (1ull << 40))
        corrupt(origin, "tensor \"" + name + "\" has an invalid shape " + entry["shape"].dump());
      e.shape.push_back(extent.get<int64_t>());
      numel *= extent.get<uint64_t>();
      if (numel > (1ull << 40)) corrupt(origin, "tensor \"" + name + "\" is impossibly large");
    }
    if (e.shape.size() > static_cast<size_t>(kMaxRank))
      corrupt(origin, "tensor \"" + name + "\" has rank " + std::to_string(e.shape.size()) + " (at most 4 supported)");
    const auto& offs = entry["data_offsets"];
    if (!offs[0].is_number_unsigned() || !offs[1].is_number_unsigned())
      corrupt(origin, "tensor \"" + name + "\" has non-integer data_offsets");
    e.begin = offs[0].get<uint64_t>();
    e.end = offs[1].get<uint64_t>();
    const uint64_t expected = numel * dtype_size(e.dtype);
    if (e.begin > e.end || e.end > data_len)
      corrupt(origin, "tensor \"" + name + "\" data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                          "] fall outside the " + std::to_string(data_len) + "-byte data section (truncated file?)");
    if (e.end - e.begin != expected)
      corrupt(origin, "tensor \"" + name + "\" holds " + std::to_string(e.end - e.begin) +
                          " bytes, its dtype and shape need " + std::to_string(expected));
    h.data_end = std::max(h.data_end, e.end);
    h.data_bytes = saturating_add(h.data_bytes, expected);
    h.entries.push_back(std::move(e));
  }
  // Two tensors sharing bytes would alias each other (writing one changes the other): refused,
  // as the reference implementation does. Empty tensors occupy no bytes and never overlap.
  std::sort(h.entries.begin(), h.entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const Entry* last = nullptr;
  for (const Entry& e : h.entries) {
    if (e.begin == e.end) continue;
    if (last && e.begin < last->end)
      corrupt(origin, "tensors \"" + last->name + "\" [" + std::to_string(last->begin) + ", " + std::to_string(last->end) +
                          ") and \"" + e.name + "\" [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                          ") overlap in the data section");
    last = &e;
  }
  return h;
}

Header parse_prefix(const std::string& bytes, const std::string& origin, uint64_t& header_len) {
  if (bytes.size() < 8) corrupt(origin, "shorter than the 8-byte header length (" + std::to_string(bytes.size()) + " bytes)");
  header_len = header_length(reinterpret_cast<const unsigned char*>(bytes.data()));
  if (header_len > kMaxHeader || header_len > bytes.size() - 8)
    corrupt(origin, "header length " + std::to_string(header_len) + " exceeds the file (" + std::to_string(bytes.size()) +
                        " bytes)");
  return parse_header(bytes.data() + 8, static_cast<size_t>(header_len), bytes.size() - 8 - header_len, origin);
}

}  // namespace

SafetensorsFile parse_safetensors_file(const std::string& bytes, const std::string& origin) {
  uint64_t header_len = 0;
  Header h = parse_prefix(bytes, origin, header_len);
  const char* data = bytes.data() + 8 + header_len;
  SafetensorsFile file;
  file.metadata = std::move(h.metadata);
  for (const Entry& e : h.entries) {
    HostTensor t(e.dtype, e.shape);
    if (e.end > e.begin) std::memcpy(t.data(), data + e.begin, e.end - e.begin);
    file.tensors.emplace(e.name, std::move(t));
  }
  return file;
}

TensorMap parse_safetensors(const std::string& bytes, const std::string& origin) {
  return parse_safetensors_file(bytes, origin).tensors;
}

SafetensorsFile read_safetensors_file(const std::string& path, uint64_t max_data_bytes) {
  InputFile in(path, "safetensors file");
  unsigned char prefix[8];
  const uint64_t got = in.read_some(prefix, 8);
  if (got < 8) corrupt(path, "shorter than the 8-byte header length (" + std::to_string(got) + " bytes)");
  const uint64_t header_len = header_length(prefix);
  const uint64_t file_size = in.regular() ? in.size() : kUnknown;
  if (header_len > kMaxHeader || (in.regular() && header_len > file_size - 8))
    corrupt(path, "header length " + std::to_string(header_len) +
                      (in.regular() ? " exceeds the file (" + std::to_string(file_size) + " bytes)"
                                    : " exceeds the limit of " + std::to_string(kMaxHeader) + " bytes"));
  std::string text(static_cast<size_t>(header_len), '\0');
  if (in.read_some(text.data(), header_len) < header_len)
    corrupt(path, "the stream ended inside the " + std::to_string(header_len) + "-byte header (truncated file?)");
  const uint64_t data_len = in.regular() ? file_size - 8 - header_len : kUnknown;
  Header h = parse_header(text.data(), text.size(), data_len, path);
  if (h.data_bytes > max_data_bytes)
    fail(ErrorCode::out_of_memory, path + ": its tensors need " + format_bytes(h.data_bytes) +
                                       ", more than the memory limit of " + format_bytes(max_data_bytes));
  // Tensors in file order: one pass, so a stream is read exactly up to the last tensor's end.
  SafetensorsFile file;
  file.metadata = std::move(h.metadata);
  const uint64_t data_start = 8 + header_len;
  for (const Entry& e : h.entries) {
    HostTensor t(e.dtype, e.shape);
    const uint64_t bytes = e.end - e.begin;
    if (bytes) {
      const uint64_t at = in.position() - data_start;
      if (e.begin < at) {  // only empty tensors may start before the bytes already read
        corrupt(path, "tensor \"" + e.name + "\" overlaps the one before it");
      }
      in.skip(e.begin - at);
      if (in.position() - data_start != e.begin || in.read_some(t.data(), bytes) < bytes)
        corrupt(path, "the file ended inside tensor \"" + e.name + "\" (truncated file?)");
    }
    file.tensors.emplace(e.name, std::move(t));
  }
  return file;
}

TensorMap read_safetensors(const std::string& path) { return read_safetensors_file(path).tensors; }

void write_safetensors(std::ostream& out, const TensorMap& tensors, const Metadata& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
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
  const uint64_t n = text.size();
  char len[8];
  for (int k = 0; k < 8; ++k) len[k] = static_cast<char>((n >> (8 * k)) & 0xff);
  out.write(len, 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const auto& [name, t] : tensors) out.write(static_cast<const char*>(t.data()), static_cast<std::streamsize>(t.bytes()));
}

void write_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata) {
  // Checked before the file is touched: a tensor that cannot be stored leaves nothing behind.
  for (const auto& [name, t] : tensors)
    if (!st_name(t.view().dtype))
      fail(ErrorCode::invalid_argument, "safetensors: cannot store dtype " + std::string(dtype_name(t.view().dtype)));
  write_output_file(path, [&](std::ostream& out) { write_safetensors(out, tensors, metadata); });
}

}  // namespace mla
