// Device configs: every problem reported with its JSON path; the nearest key suggested.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>

#include "mla/error.hpp"
#include "mla/registry.hpp"

using namespace mla;
using nlohmann::json;

namespace {
std::vector<std::string> problems(const json& config) {
  std::vector<std::string> out;
  for (const auto& i : validate_config(config)) out.push_back(i.to_string());
  return out;
}
}  // namespace

TEST_CASE("config errors name the JSON path", "[core][config]") {
  CHECK(problems(json{{"backend", "cpu"}}).empty());
  CHECK(problems(default_config()).empty());
  CHECK(problems(json{{"backend", "cpu"}, {"cpu", {{"thread", 2}}}}) ==
        std::vector<std::string>{"/cpu/thread: unknown key (did you mean \"threads\"?)"});
  CHECK(problems(json{{"backend", "cpu"}, {"cpu", {{"threads", "two"}}}}) ==
        std::vector<std::string>{"/cpu/threads: expected an integer, got string \"two\""});
  CHECK(problems(json{{"backend", "cpu"}, {"cpu", {{"kv_tile_tokens", 0}}}}) ==
        std::vector<std::string>{"/cpu/kv_tile_tokens: expected an integer in [1, 65536], got 0"});
  CHECK(problems(json{{"backend", "cpu"}, {"cpu", {{"path", "fats"}}}}) ==
        std::vector<std::string>{"/cpu/path: expected one of fast, reference, got \"fats\" (did you mean \"fast\"?)"});
  CHECK(problems(json{{"backnd", "cpu"}}).size() == 2);  // missing backend + unknown key
  CHECK_THAT(problems(json{{"name", "x"}})[0], Catch::StartsWith("/backend: required key is missing"));
  CHECK_THAT(problems(json{{"backend", "gpu"}})[0], Catch::StartsWith("/backend: expected one of"));
  CHECK_THAT(problems(json::array())[0], Catch::StartsWith("/: expected an object"));
  CHECK(problems(json{{"backend", "cpu"}, {"cpu", 3}}) ==
        std::vector<std::string>{"/cpu: expected an object, got integer"});
}

TEST_CASE("opening a bad or unavailable config fails with the reason", "[core][config]") {
  try {
    open_device(json{{"backend", "cpu"}, {"cpu", {{"threads", -1}}}});
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::invalid_config);
    CHECK_THAT(e.what(), Catch::Contains("/cpu/threads"));
  }
  for (const auto& b : list_backends()) {
    if (b.availability.available) continue;
    // No silent fallback: an unavailable backend refuses to open and says why.
    try {
      open_device(json{{"backend", b.name}});
    } catch (const Error& e) {
      if (e.code() == ErrorCode::invalid_config) continue;  // needs required fields first
      CHECK(e.code() == ErrorCode::backend_unavailable);
      CHECK_THAT(e.what(), Catch::Contains(b.availability.reason));
    }
  }
}

TEST_CASE("config overrides given with --set", "[core][config]") {
  json c = default_config();
  apply_override(c, "cpu.path=reference");
  apply_override(c, "cpu.threads=1");
  CHECK(c["cpu"]["path"] == "reference");
  CHECK(c["cpu"]["threads"] == 1);
  CHECK_THROWS_AS(apply_override(c, "novalue"), Error);
  CHECK_THROWS_AS(apply_override(c, "cpu..x=1"), Error);
}

TEST_CASE("every shipped config validates", "[core][config]") {
  // Every file in configs/, so a config added later is covered without touching this test.
  std::set<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(MLA_SOURCE_DIR) + "/configs")) {
    if (entry.path().extension() != ".json") continue;
    names.insert(entry.path().filename().string());
    INFO(entry.path().string());
    json config;
    REQUIRE_NOTHROW(config = read_config_file(entry.path().string()));
    CHECK(problems(config).empty());
    CHECK(config["name"].is_string());  // shown in every result
  }
  for (const char* name : {"cpu.json", "sc11_fp300.json", "ascend910b.json", "h100_sxm.json", "h200_sxm.json"}) {
    INFO(name);
    CHECK(names.count(name) == 1);
  }
}

TEST_CASE("docs/configs.md lists every shipped config with its backend and name", "[core][config]") {
  std::ifstream in(std::string(MLA_SOURCE_DIR) + "/docs/configs.md");
  REQUIRE(in);
  const std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  int listed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(MLA_SOURCE_DIR) + "/configs")) {
    if (entry.path().extension() != ".json") continue;
    const json config = read_config_file(entry.path().string());
    const std::string row = "| `configs/" + entry.path().filename().string() + "` | `" +
                            config["backend"].get<std::string>() + "` | " + config["name"].get<std::string>();
    INFO(row);
    CHECK(doc.find("\n" + row) != std::string::npos);
    ++listed;
  }
  CHECK(listed >= 5);
}
