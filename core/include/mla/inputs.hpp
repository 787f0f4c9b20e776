// Random operator inputs that follow the testing rules of DESIGN 7: fresh random values
// (never zeros), KV rows past each length and unused block-table entries poisoned, outputs
// poisoned before every run so unwritten elements show.
#pragma once

#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

#include "mla/host_tensor.hpp"
#include "mla/problem.hpp"

namespace mla {

struct InputSpec {
  int64_t seqlen = 1024;          // length of every sequence (or the mean with varlen)
  bool varlen = false;            // lengths max(Normal(seqlen, seqlen/2), s_q), as ANCHORS.md
  std::vector<int32_t> seqlens;   // explicit lengths; overrides seqlen/varlen when not empty
  uint64_t seed = 1;
  bool poison = true;             // NaN rows past the lengths, junk block ids past the pages used
  int64_t extra_blocks = 1;       // unused physical blocks (poisoned) beyond those needed
  int kv_outlier_channels = 0;    // this many KV channels (evenly spaced) 32x larger: outlier-heavy caches
};

// The lengths InputSpec describes for `batch` sequences.
std::vector<int32_t> make_seqlens(const InputSpec& spec, int64_t batch, int64_t s_q);

struct HostInputs {
  Problem problem;  // num_blocks and max_blocks_per_seq filled in
  std::vector<int32_t> seqlens;
  HostTensor q, q_nope, q_rope, w_uk, w_uv, kv_cache, kv_scale, block_table, cache_seqlens, out, lse;
  // A quantized cache's values before quantization (bf16, same shape but d_qk per token): what
  // the quantization error is measured against. Empty for plain formats.
  HostTensor kv_unquantized;

  [[nodiscard]] RunArgs args() const;  // host views of all tensors
  // The same problem and inputs with kv_unquantized as a bf16 cache: the baseline of the
  // quantization error. Only when kv_unquantized is defined.
  [[nodiscard]] HostInputs unquantized() const;
  void poison_outputs();               // NaN into out and lse
  [[nodiscard]] double mean_seqlen() const;
};

// HostInputs' tensor of each RunArgs operand, in the order of kRunOperands, so code that walks
// every operand (args(), files, device mirrors) walks kRunOperands and this one list.
inline constexpr HostTensor HostInputs::*kHostOperands[] = {
    &HostInputs::q,        &HostInputs::q_nope,      &HostInputs::q_rope,        &HostInputs::w_uk,
    &HostInputs::w_uv,     &HostInputs::kv_cache,    &HostInputs::kv_scale,      &HostInputs::block_table,
    &HostInputs::cache_seqlens, &HostInputs::out,    &HostInputs::lse,
};
static_assert(std::size(kHostOperands) == std::size(kRunOperands), "one HostInputs tensor per RunArgs operand");
// The tensor of `operand` (an entry of kRunOperands) in `in`.
HostTensor& host_operand(HostInputs& in, const RunOperand& operand);
const HostTensor& host_operand(const HostInputs& in, const RunOperand& operand);
// True for the operands a run writes (out, lse); the others are its inputs.
bool is_output_operand(const RunOperand& operand);

// `problem` gives everything but num_blocks / max_blocks_per_seq, which are derived.
HostInputs make_random_inputs(const Problem& problem, const InputSpec& spec);
// The problem make_random_inputs(problem, spec) builds (num_blocks and max_blocks_per_seq
// derived from the lengths, also returned in `seqlens`), without allocating anything: to check
// what it will take before it is made.
Problem random_inputs_problem(const Problem& problem, const InputSpec& spec, std::vector<int32_t>* seqlens = nullptr);

// Host inputs of a problem whose tensors come from elsewhere (a file): shapes checked later.
Problem infer_problem_from_tensors(Problem base, const RunArgs& args);

}  // namespace mla
