// Bad input to `mla compare`: cases files, filters, configs, output paths. Each must stop the
// run before any case runs, with no JSON or JUnit file left behind.
#include <catch2/catch.hpp>

#include "robustness/robustness_table.hpp"

namespace mla::robustness {

void add_compare_rows(Table& t) {
  const std::string cpu = std::string(MLA_SOURCE_DIR) + "/configs/cpu.json";
  const std::string outs = " --json out.json --junit out.xml";
  const std::vector<std::string> outputs = {"out.json", "out.xml"};
  auto compare = [&](const std::string& input, const std::string& args, int code, const std::string& needle) {
    t.cli("compare", input, "compare --configs " + cpu + " " + args + outs, code, needle, outputs);
  };
  t.write_text("cases_typo.json", R"({"cases": [{"name": "a", "hedas": 16}]})");
  compare("cases file: unknown key", "--cases cases_typo.json", 2, "/cases/0/hedas: unknown key (did you mean \"heads\"?)");
  t.write_text("cases_gqa.json", R"({"cases": [{"heads": 16, "kv_heads": 3}]})");
  compare("cases file: h_q not a multiple of h_kv", "--cases cases_gqa.json", 2,
          "/cases/0: problem.h_q: expected a multiple of h_kv = 3, got 16");
  t.write_text("cases_type.json", R"({"cases": [{"seqlen": "long"}]})");
  compare("cases file: wrong type", "--cases cases_type.json", 2, "/cases/0/seqlen: expected an integer, got string");
  t.write_text("cases_neg.json", R"({"cases": [{"seqlen": -1}]})");
  compare("cases file: negative length", "--cases cases_neg.json", 2, "/cases/0/seqlen: expected an integer in [0, ");
  t.write_text("cases_empty.json", R"({"cases": []})");
  compare("cases file: no cases", "--cases cases_empty.json", 2, "/cases: expected a non-empty array");
  t.write_text("cases_dup.json", R"({"cases": [{"name": "x"}, {"name": "x"}]})");
  compare("cases file: two cases with one name", "--cases cases_dup.json", 2, "two cases are named \"x\"");
  t.write_text("cases_syntax.json", R"({"cases": [)");
  compare("cases file: JSON syntax error", "--cases cases_syntax.json", 2, "cases file is not valid JSON");
  compare("cases file does not exist", "--cases no_cases.json", 2, "cannot open cases file \"no_cases.json\"");
  compare("--only names no case", "--only no_such_case", 2, "--only: no case named \"no_such_case\"");
  compare("--kv-format names no format", "--kv-format fp4", 2, "unknown KV format \"fp4\" (expected one of");
  t.write_text("cases_kv.json", R"({"cases": [{"kv_format": "fp8"}]})");
  compare("cases file: unknown kv_format", "--cases cases_kv.json", 2,
          "/cases/0/kv_format: expected one of bf16, fp16, fp32, fp8_e4m3, fp8_ds_mla, int8, got \"fp8\"");
  compare("--repeat 0", "--repeat 0", 2, "--repeat");
  compare("--set for a config number that is not there", "--set 2:cpu.threads=1", 2,
          "must be a config number from 1 to 1");
  t.write_text("bad_cfg.json", R"({"backend": "cpu", "cpu": {"path": "slow"}})");
  compare("one invalid config among valid ones", "bad_cfg.json", 2, "bad_cfg.json: invalid config: /cpu/path: expected one of");
  t.cli("compare", "--json into a folder that does not exist", "compare --configs " + cpu + " --json no_dir/r.json", 2,
        "--json: cannot write \"no_dir/r.json\"", {"no_dir/r.json"});
  t.cli("compare", "no --configs", "compare --cases quick" + outs, 2, "--configs is required", outputs);
}

}  // namespace mla::robustness
