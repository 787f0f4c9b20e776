// Helpers shared by the tests: run a problem on a device end to end and compare it with the
// float64 reference.
#pragma once

#include <string>
#include <vector>

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

// After a context-parallel merge (ranks[r] holds rank r's merged out and lse): every rank is
// within tolerance of the float64 reference of the unsplit `full`, and bit-equal to rank 0.
void check_merged_ranks(const HostInputs& full, const std::vector<HostInputs>& ranks);

Problem small_problem(int64_t b, int64_t s_q, int64_t h_q, int64_t h_kv, bool causal, int64_t page_size,
                      Variant variant = Variant::latent, DType dtype = DType::bf16);

}  // namespace mla::testing
