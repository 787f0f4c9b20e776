// Reading a device config: every field checked, every problem reported with its JSON path.
//
// A ConfigReader walks one JSON object. Each getter marks its key as known and checks type
// and range; finish() reports the keys nobody asked for, with the nearest known key as a
// suggestion. Problems are collected, not thrown, so `mla validate-config` lists them all.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mla {

struct ConfigIssue {
  std::string path;     // JSON pointer, e.g. "/chip/ddr/bandwidth_gbps"
  std::string message;  // what was expected and what was given
  [[nodiscard]] std::string to_string() const { return path + ": " + message; }
};

class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& object, std::string path, std::vector<ConfigIssue>* issues);

  // Numbers: `fallback` when absent; a problem when present but not a number or out of [min, max].
  double number(const std::string& key, double fallback, double min, double max);
  double required_number(const std::string& key, double min, double max);
  int64_t integer(const std::string& key, int64_t fallback, int64_t min, int64_t max);
  int64_t required_integer(const std::string& key, int64_t min, int64_t max);
  bool boolean(const std::string& key, bool fallback);
  std::string string(const std::string& key, const std::string& fallback);
  // One of `choices`; suggests the nearest when it is not.
  std::string choice(const std::string& key, const std::string& fallback, const std::vector<std::string>& choices);
  // A nested object; absent means empty. Call finish() on it too.
  ConfigReader object(const std::string& key);
  bool has(const std::string& key) const;
  void mark_known(const std::string& key);  // accepted without being read here
  void add_issue(const std::string& key, const std::string& message);

  // Reports unknown keys. Call once all getters for this object have run.
  void finish();

  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] std::string child_path(const std::string& key) const { return path_ + "/" + key; }

 private:
  const nlohmann::json* lookup(const std::string& key);
  nlohmann::json object_;
  std::string path_;
  std::vector<ConfigIssue>* issues_;
  std::set<std::string> known_;
};

// Levenshtein-nearest candidate within a small distance, or "" when none is close.
std::string nearest_word(const std::string& word, const std::vector<std::string>& candidates);

// JSON text with at most kMaxJsonDepth levels of nesting. nlohmann's parser is iterative, but
// copying and destroying a value recurse once per level: 100000 nested arrays overflow the
// stack (of a sanitizer build, of a thread). Throws nlohmann::json::exception on bad syntax,
// and one whose message ends in "nesting deeper than 64 levels" for deep documents.
inline constexpr int kMaxJsonDepth = 64;
nlohmann::json parse_json(const std::string& text);

// Applies a `--set a.b.c=value` override: value parsed as JSON if it parses, else a string.
void apply_override(nlohmann::json& config, const std::string& assignment);

}  // namespace mla
