#include "memory_budget.hpp"

#include <cstdlib>
#include <limits>

#include <tbb/task_arena.h>

#include "mla/error.hpp"

namespace mla::cli {

void MemoryOptions::add_to(CLI::App& app) {
  app.add_option("--memory-limit", limit_text,
                 "Host memory this command may use, e.g. 8G, 512M, or none (default: $MLA_MEMORY_LIMIT, else 80% of "
                 "this machine's memory)");
}

std::string MemoryOptions::text() const {
  if (!limit_text.empty()) return limit_text;
  const char* env = std::getenv("MLA_MEMORY_LIMIT");
  return env ? std::string(env) : std::string();
}

uint64_t MemoryOptions::limit() const {
  const std::string t = text();
  if (t.empty()) return default_host_memory_limit();
  if (t == "none") return std::numeric_limits<uint64_t>::max();
  const auto bytes = parse_byte_size(t);
  if (!bytes || *bytes == 0)
    fail(ErrorCode::invalid_argument, std::string(limit_text.empty() ? "MLA_MEMORY_LIMIT" : "--memory-limit") +
                                          ": expected a size such as 8G, 512M, 100000000 or none, got \"" + t + "\"");
  return *bytes;
}

std::string MemoryOptions::describe() const {
  const std::string t = text();
  if (t.empty())
    return format_bytes(limit()) + " (80% of this machine's " + format_bytes(host_memory_bytes()) +
           "; --memory-limit to change)";
  return format_bytes(limit()) + " (" + (limit_text.empty() ? "MLA_MEMORY_LIMIT" : "--memory-limit") + " " + t + ")";
}

void MemoryOptions::check(const MemoryEstimate& need, const std::string& what) const {
  if (need.total() <= limit()) return;
  fail(ErrorCode::out_of_memory,
       what + " needs " + need.describe() + ", more than the host memory limit of " + describe());
}

MemoryEstimate decode_memory(const Problem& problem, int64_t max_seqlen, const Plan* plan, bool with_reference) {
  MemoryEstimate m = problem_tensors(problem);
  if (plan && plan->memory_space() == MemorySpace::host) m.add("workspace", plan->workspace_bytes());
  if (with_reference)
    for (const auto& part : reference_memory(problem, max_seqlen, tbb::this_task_arena::max_concurrency()).parts)
      m.add(part.first, part.second);
  if (is_quantized(problem.kv_format)) {
    // Random inputs keep the bf16 values a quantized cache was made from; the check runs the
    // reference a second time on them (its scratch is freed in between, its outputs are not).
    const Problem& p = problem;
    m.add("kv_unquantized", tensor_bytes(DType::bf16, {p.num_blocks, p.page_size, p.h_kv, p.d_qk()}));
    if (with_reference) {
      m.add("baseline reference out", tensor_bytes(DType::fp64, {p.batch, p.s_q, p.h_q, p.out_width()}));
      m.add("baseline out", tensor_bytes(p.dtype, {p.batch, p.s_q, p.h_q, p.out_width()}));
    }
  }
  return m;
}

}  // namespace mla::cli
