#include "mla/memory.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>

#include <unistd.h>

namespace mla {

namespace {

// A cgroup limit file: a number, or "max" (no limit).
std::optional<uint64_t> read_limit(const char* path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text) || text == "max") return std::nullopt;
  try {
    return std::stoull(text);
  } catch (...) {
    return std::nullopt;
  }
}

}  // namespace

uint64_t host_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  uint64_t bytes = pages > 0 && page > 0 ? saturating_mul(static_cast<uint64_t>(pages), static_cast<uint64_t>(page))
                                         : uint64_t{8} << 30;
  // cgroup v2, then v1 (whose "no limit" is a huge number, harmless under the min).
  for (const char* path : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"})
    if (auto limit = read_limit(path); limit && *limit > 0 && *limit < bytes) bytes = *limit;
  return bytes;
}

uint64_t default_host_memory_limit() { return host_memory_bytes() / 5 * 4; }

uint64_t saturating_mul(uint64_t a, uint64_t b) {
  uint64_t r = 0;
  return __builtin_mul_overflow(a, b, &r) ? std::numeric_limits<uint64_t>::max() : r;
}

uint64_t saturating_add(uint64_t a, uint64_t b) {
  uint64_t r = 0;
  return __builtin_add_overflow(a, b, &r) ? std::numeric_limits<uint64_t>::max() : r;
}

std::optional<uint64_t> parse_byte_size(const std::string& text) {
  if (text.empty() || text.size() > 40) return std::nullopt;
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (...) {
    return std::nullopt;
  }
  std::string unit = text.substr(used);
  if (unit.size() >= 2 && unit.compare(unit.size() - 2, 2, "iB") == 0) unit.resize(unit.size() - 2);
  else if (!unit.empty() && unit.back() == 'B') unit.pop_back();
  double scale = 1;
  if (unit == "K" || unit == "k") scale = 1024.0;
  else if (unit == "M" || unit == "m") scale = 1024.0 * 1024;
  else if (unit == "G" || unit == "g") scale = 1024.0 * 1024 * 1024;
  else if (unit == "T" || unit == "t") scale = 1024.0 * 1024 * 1024 * 1024;
  else if (!unit.empty()) return std::nullopt;
  const double bytes = value * scale;
  if (!std::isfinite(bytes) || bytes < 0 || bytes >= 1.8e19) return std::nullopt;
  return static_cast<uint64_t>(bytes);
}

std::string format_bytes(uint64_t bytes) {
  if (bytes == std::numeric_limits<uint64_t>::max()) return "more than 16 EiB";
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 6) {
    v /= 1024;
    ++u;
  }
  char buf[48];
  if (u == 0) std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  else std::snprintf(buf, sizeof buf, "%.2f %s", v, units[u]);
  return buf;
}

void MemoryEstimate::add(const std::string& name, uint64_t bytes) {
  if (bytes) parts.emplace_back(name, bytes);
}

uint64_t MemoryEstimate::total() const {
  uint64_t sum = 0;
  for (const auto& part : parts) sum = saturating_add(sum, part.second);
  return sum;
}

std::string MemoryEstimate::describe() const {
  std::string s = format_bytes(total()) + " (";
  for (size_t k = 0; k < parts.size(); ++k) s += (k ? ", " : "") + parts[k].first + " " + format_bytes(parts[k].second);
  return s + ")";
}

uint64_t tensor_bytes(DType dtype, std::initializer_list<int64_t> shape) {
  uint64_t n = dtype_size(dtype);
  for (int64_t extent : shape) n = saturating_mul(n, extent > 0 ? static_cast<uint64_t>(extent) : 0);
  return n;
}

MemoryEstimate problem_tensors(const Problem& p) {
  MemoryEstimate m;
  if (p.variant == Variant::latent) {
    m.add("q", tensor_bytes(p.dtype, {p.batch, p.s_q, p.h_q, p.d_qk()}));
  } else {
    m.add("q_nope", tensor_bytes(p.dtype, {p.batch, p.s_q, p.h_q, p.d_nope}));
    m.add("q_rope", tensor_bytes(p.dtype, {p.batch, p.s_q, p.h_q, p.d_r}));
    m.add("w_uk", tensor_bytes(p.dtype, {p.h_q, p.d_nope, p.d_c}));
    m.add("w_uv", tensor_bytes(p.dtype, {p.h_q, p.d_c, p.d_vh}));
  }
  m.add("kv_cache", tensor_bytes(p.kv().element, {p.num_blocks, p.page_size, p.h_kv, p.kv_token_elements()}));
  const std::vector<int64_t> scale = kv_scale_shape(p.kv_format, p.d_c, p.d_r);
  if (!scale.empty()) m.add("kv_scale", tensor_bytes(DType::fp32, {scale[0]}));
  m.add("block_table", tensor_bytes(DType::int32, {p.batch, p.max_blocks_per_seq}));
  m.add("cache_seqlens", tensor_bytes(DType::int32, {p.batch}));
  m.add("out", tensor_bytes(p.dtype, {p.batch, p.s_q, p.h_q, p.out_width()}));
  m.add("lse", tensor_bytes(DType::fp32, {p.batch, p.h_q, p.s_q}));
  return m;
}

MemoryEstimate reference_memory(const Problem& p, int64_t max_seqlen, int threads) {
  MemoryEstimate m;
  m.add("reference out", tensor_bytes(DType::fp64, {p.batch, p.s_q, p.h_q, p.out_width()}));
  m.add("reference lse", tensor_bytes(DType::fp64, {p.batch, p.h_q, p.s_q}));
  // Each task (sequence, KV head) keeps every score of its query rows, plus query and
  // accumulator rows; at most `threads` tasks run at once.
  const int64_t rows = p.heads_per_kv() * p.s_q;
  const uint64_t per_task = saturating_add(tensor_bytes(DType::fp64, {rows, std::max<int64_t>(max_seqlen, 1)}),
                                           tensor_bytes(DType::fp64, {rows, p.d_qk() + p.d_v() + 2}));
  const int64_t tasks = std::min<int64_t>(std::max(threads, 1), p.batch * p.h_kv);
  m.add("reference scratch", saturating_mul(per_task, static_cast<uint64_t>(tasks)));
  return m;
}

}  // namespace mla
