// The cases `mla compare` runs: the built-in quick and full sets (the project's test grid, docs/compare.md) and cases
// read from a user's JSON file. A case holds only what `mla run` can express with its shape
// flags, so every case has a one-line `mla run` reproduction.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mla/compare.hpp"
#include "mla/inputs.hpp"
#include "mla/problem.hpp"
#include "options.hpp"

namespace mla::cli {

struct CompareCase {
  std::string name;
  ShapeOptions shape = small_shape();  // the shape flags of `mla run` that reproduce the case
  bool seed_given = false;  // from a cases file; otherwise the seed is --seed + case index
  // Replaces the dtype's default tolerance (fields left out keep the default). A case with an
  // override is reproduced by `mla compare --only`, since `mla run --check` uses the default.
  std::optional<double> rel_l2, max_abs, lse_abs;

  [[nodiscard]] Problem problem() const { return shape.problem(); }
  [[nodiscard]] InputSpec spec() const { return shape.spec(); }
  [[nodiscard]] KvFormat kv() const { return shape.kv(); }
  [[nodiscard]] bool quantized() const { return is_quantized(kv()); }
  [[nodiscard]] bool has_tolerance_override() const { return rel_l2 || max_abs || lse_abs; }
  [[nodiscard]] Tolerance tolerance() const;  // the dtype default with the overrides applied
  // Defaults of a case: small enough that every backend runs it in well under a second.
  static ShapeOptions small_shape();
  [[nodiscard]] std::string describe() const;  // one short line for progress and tables
};

// "quick", "full" or a path to a JSON file ({"cases": [{...}, ...]}, keys as CompareCase; the
// KV format is "kv_format"). Both built-in sets hold cases of every KV format.
// Seeds not given by the file are base_seed + index. Throws Error(invalid_argument / io_error)
// naming the file and the JSON path of the problem.
std::vector<CompareCase> load_cases(const std::string& which, uint64_t base_seed);

}  // namespace mla::cli
