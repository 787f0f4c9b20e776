// The host memory a command may use: --memory-limit (or $MLA_MEMORY_LIMIT), by default 80% of
// this machine's memory (or its container's limit). Commands add up what a problem's tensors,
// the backend's workspace and the float64 reference will take and refuse a problem over the
// limit before allocating any of it.
#pragma once

#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

#include "mla/memory.hpp"
#include "mla/mla.hpp"

namespace mla::cli {

struct MemoryOptions {
  std::string limit_text;  // --memory-limit: "8G", "512M", "none"; empty: environment or default
  void add_to(CLI::App& app);
  [[nodiscard]] uint64_t limit() const;  // UINT64_MAX for "none"
  // Error(out_of_memory): "<what> needs 6.04 GiB (kv_cache ..., ...), more than the host memory
  // limit of 4.00 GiB (80% of ...; --memory-limit to change)".
  void check(const MemoryEstimate& need, const std::string& what) const;

 private:
  [[nodiscard]] std::string text() const;        // the flag, else $MLA_MEMORY_LIMIT, else ""
  [[nodiscard]] std::string describe() const;    // the limit and where it comes from
};

// The host memory of one decode of `problem` (sizes filled in) with sequences of at most
// `max_seqlen` tokens: its tensors, the plan's workspace when the device computes in host
// memory, and the reference's buffers when `with_reference`; for a quantized KV format also the
// bf16 values of the cache and the second (quantization baseline) reference.
MemoryEstimate decode_memory(const Problem& problem, int64_t max_seqlen, const Plan* plan, bool with_reference);

}  // namespace mla::cli
