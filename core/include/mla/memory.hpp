// Host memory: how much this machine (or its container) has, byte sizes with overflow-safe
// arithmetic, and what a problem's tensors take, so that a tool can refuse a problem that does
// not fit before allocating it (the alternative is the kernel's OOM killer: exit 137, no word).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mla/problem.hpp"

namespace mla {

// Physical memory, or the cgroup's limit when that is lower (containers).
uint64_t host_memory_bytes();
// The default limit tools apply: 80% of host_memory_bytes(), leaving room for the system.
uint64_t default_host_memory_limit();

// a * b and a + b, saturating at UINT64_MAX instead of wrapping.
uint64_t saturating_mul(uint64_t a, uint64_t b);
uint64_t saturating_add(uint64_t a, uint64_t b);

// "123", "64K", "512M", "8G", "1.5T" (powers of 1024; a trailing "B" or "iB" is accepted).
// nullopt when the text is not a size.
std::optional<uint64_t> parse_byte_size(const std::string& text);
// "6.04 GiB", "512 B".
std::string format_bytes(uint64_t bytes);

// What one piece of work needs, by part, for a message that says where the bytes go.
struct MemoryEstimate {
  std::vector<std::pair<std::string, uint64_t>> parts;
  void add(const std::string& name, uint64_t bytes);
  [[nodiscard]] uint64_t total() const;
  [[nodiscard]] std::string describe() const;  // "6.04 GiB (kv_cache 6.00 GiB, q 1.1 MiB, ...)"
};

// Bytes of a tensor of `dtype` with these extents (saturating).
uint64_t tensor_bytes(DType dtype, std::initializer_list<int64_t> shape);
// The host tensors of one call of `problem` (num_blocks and max_blocks_per_seq filled in):
// the inputs of its variant, out and lse.
MemoryEstimate problem_tensors(const Problem& problem);
// What mla::reference_decode holds for `problem` with sequences of at most `max_seqlen`
// tokens: its float64 outputs and the per-task score rows, `threads` tasks at a time.
MemoryEstimate reference_memory(const Problem& problem, int64_t max_seqlen, int threads);

}  // namespace mla
