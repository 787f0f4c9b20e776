// Helpers shared by the tests: run a problem on a device end to end and compare it with the
// float64 reference.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "mla/compare.hpp"
#include "mla/inputs.hpp"
#include "mla/mla.hpp"
#include "mla/reference.hpp"

namespace mla::testing {

// A config for `backend` with extra fields merged in (e.g. {"cpu": {"path": "reference"}}).
nlohmann::json config_for(const std::string& backend, const nlohmann::json& extra = nlohmann::json::object());

struct CaseResult {
  Comparison comparison;
  RunResult run;
};

// Plans, schedules and runs `inputs` on a host-memory device, then compares with the reference.
CaseResult run_and_compare(Device& device, HostInputs& inputs);

// After a run on a quantized cache: `inputs`' output against the float64 reference on the
// unquantized bf16 values (HostInputs::unquantized), with the format's quantization tolerance.
Comparison compare_to_unquantized(const HostInputs& inputs);

// Rank r of n of a context-parallel split of `full`: pages [r*P/n, (r+1)*P/n) of each
// sequence (P its page count), contiguous token ranges in rank order with the newest tokens on
// the last rank, which alone keeps the causal mask (docs/context-parallel.md). q, weights and
// the physical cache are shared with `full`; block table, lengths and fresh poisoned outputs
// are the rank's own.
HostInputs context_shard(const HostInputs& full, int rank, int ranks);

Problem small_problem(int64_t b, int64_t s_q, int64_t h_q, int64_t h_kv, bool causal, int64_t page_size,
                      Variant variant = Variant::latent, DType dtype = DType::bf16);

}  // namespace mla::testing
