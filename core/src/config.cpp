#include "mla/config.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "mla/error.hpp"

namespace mla {

namespace {

std::string json_type_name(const nlohmann::json& v) {
  if (v.is_number_integer()) return "integer";
  if (v.is_number_float()) return "number";
  return v.type_name();
}

std::string short_value(const nlohmann::json& v) {
  std::string s = v.dump();
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

std::string number_text(double x) {
  std::ostringstream os;
  os << x;
  return os.str();
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

std::string nearest_word(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = SIZE_MAX;
  for (const auto& c : candidates) {
    size_t d = edit_distance(word, c);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  // Close enough to be a typo: a third of the word, at least 2 edits.
  size_t limit = std::max<size_t>(2, word.size() / 3);
  return best_distance <= limit ? best : std::string();
}

ConfigReader::ConfigReader(const nlohmann::json& object, std::string path, std::vector<ConfigIssue>* issues)
    : object_(object), path_(std::move(path)), issues_(issues) {
  if (!object_.is_object()) {
    issues_->push_back({path_.empty() ? "/" : path_, "expected an object, got " + json_type_name(object_)});
    object_ = nlohmann::json::object();
  }
}

const nlohmann::json* ConfigReader::lookup(const std::string& key) {
  known_.insert(key);
  auto it = object_.find(key);
  return it == object_.end() ? nullptr : &*it;
}

bool ConfigReader::has(const std::string& key) const { return object_.contains(key); }
void ConfigReader::mark_known(const std::string& key) { known_.insert(key); }
void ConfigReader::add_issue(const std::string& key, const std::string& message) {
  issues_->push_back({key.empty() ? path_ : child_path(key), message});
}

double ConfigReader::number(const std::string& key, double fallback, double min, double max) {
  const nlohmann::json* v = lookup(key);
  if (!v) return fallback;
  if (!v->is_number()) {
    add_issue(key, "expected a number, got " + json_type_name(*v) + " " + short_value(*v));
    return fallback;
  }
  double x = v->get<double>();
  if (!std::isfinite(x) || x < min || x > max) {
    add_issue(key, "expected a number in [" + number_text(min) + ", " + number_text(max) + "], got " + short_value(*v));
    return fallback;
  }
  return x;
}

double ConfigReader::required_number(const std::string& key, double min, double max) {
  if (!has(key)) {
    known_.insert(key);
    add_issue(key, "required number is missing (expected a value in [" + number_text(min) + ", " + number_text(max) +
                       "])");
    return min;
  }
  return number(key, min, min, max);
}

int64_t ConfigReader::integer(const std::string& key, int64_t fallback, int64_t min, int64_t max) {
  const nlohmann::json* v = lookup(key);
  if (!v) return fallback;
  bool integral = v->is_number_integer() ||
                  (v->is_number_float() && std::isfinite(v->get<double>()) && std::floor(v->get<double>()) == v->get<double>() &&
                   std::fabs(v->get<double>()) < 9.0e15);
  if (!integral) {
    add_issue(key, "expected an integer, got " + json_type_name(*v) + " " + short_value(*v));
    return fallback;
  }
  double x = v->get<double>();
  if (x < static_cast<double>(min) || x > static_cast<double>(max)) {
    add_issue(key, "expected an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "], got " +
                       short_value(*v));
    return fallback;
  }
  return v->is_number_integer() ? v->get<int64_t>() : static_cast<int64_t>(x);
}

int64_t ConfigReader::required_integer(const std::string& key, int64_t min, int64_t max) {
  if (!has(key)) {
    known_.insert(key);
    add_issue(key, "required integer is missing (expected a value in [" + std::to_string(min) + ", " +
                       std::to_string(max) + "])");
    return min;
  }
  return integer(key, min, min, max);
}

bool ConfigReader::boolean(const std::string& key, bool fallback) {
  const nlohmann::json* v = lookup(key);
  if (!v) return fallback;
  if (!v->is_boolean()) {
    add_issue(key, "expected true or false, got " + json_type_name(*v) + " " + short_value(*v));
    return fallback;
  }
  return v->get<bool>();
}

std::string ConfigReader::string(const std::string& key, const std::string& fallback) {
  const nlohmann::json* v = lookup(key);
  if (!v) return fallback;
  if (!v->is_string()) {
    add_issue(key, "expected a string, got " + json_type_name(*v) + " " + short_value(*v));
    return fallback;
  }
  return v->get<std::string>();
}

std::string ConfigReader::choice(const std::string& key, const std::string& fallback,
                                 const std::vector<std::string>& choices) {
  std::string value = string(key, fallback);
  if (std::find(choices.begin(), choices.end(), value) != choices.end()) return value;
  std::string list;
  for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
  std::string hint = nearest_word(value, choices);
  add_issue(key, "expected one of " + list + ", got \"" + value + "\"" +
                     (hint.empty() ? std::string() : " (did you mean \"" + hint + "\"?)"));
  return fallback;
}

ConfigReader ConfigReader::object(const std::string& key) {
  const nlohmann::json* v = lookup(key);
  if (!v) return ConfigReader(nlohmann::json::object(), child_path(key), issues_);
  return ConfigReader(*v, child_path(key), issues_);
}

void ConfigReader::finish() {
  std::vector<std::string> known(known_.begin(), known_.end());
  for (auto it = object_.begin(); it != object_.end(); ++it) {
    if (known_.count(it.key())) continue;
    std::string hint = nearest_word(it.key(), known);
    std::string known_list;
    for (const auto& k : known) known_list += (known_list.empty() ? "" : ", ") + k;
    issues_->push_back({child_path(it.key()),
                        "unknown key" + (hint.empty() ? " (known keys here: " + known_list + ")"
                                                      : " (did you mean \"" + hint + "\"?)")});
  }
}

namespace {
struct TooDeep : nlohmann::json::exception {
  TooDeep() : exception(0, "[json.exception.depth] nesting deeper than 64 levels") {}
};
}  // namespace

nlohmann::json parse_json(const std::string& text) {
  static_assert(kMaxJsonDepth == 64, "the message above names the limit");
  return nlohmann::json::parse(text, [](int depth, nlohmann::json::parse_event_t event, nlohmann::json&) {
    if ((event == nlohmann::json::parse_event_t::object_start || event == nlohmann::json::parse_event_t::array_start) &&
        depth >= kMaxJsonDepth)
      throw TooDeep();
    return true;
  });
}

void apply_override(nlohmann::json& config, const std::string& assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    fail(ErrorCode::invalid_argument, "--set: expected key.path=value, got \"" + assignment + "\"");
  std::string key = assignment.substr(0, eq);
  std::string text = assignment.substr(eq + 1);
  nlohmann::json value;
  try {
    value = parse_json(text);
  } catch (const nlohmann::json::exception&) {
    value = text;  // a bare word is a string
  }
  nlohmann::json* node = &config;
  std::istringstream parts(key);
  std::string part;
  std::vector<std::string> names;
  while (std::getline(parts, part, '.')) names.push_back(part);
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i].empty()) fail(ErrorCode::invalid_argument, "--set: empty path component in \"" + key + "\"");
    if (node->is_null()) *node = nlohmann::json::object();
    if (!node->is_object()) fail(ErrorCode::invalid_argument, "--set: \"" + key + "\" goes through a non-object");
    node = &(*node)[names[i]];
  }
  *node = value;
}

}  // namespace mla
