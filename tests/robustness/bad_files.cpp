// Bad safetensors input files through `mla run --inputs`: each variant is made from a valid
// file written by the CLI itself, broken in one place.
#include <catch2/catch.hpp>

#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mla/safetensors.hpp"
#include "robustness/robustness_table.hpp"

namespace mla::robustness {

namespace {

const std::string kRun = " --json out.json --output out.safetensors";
const std::vector<std::string> kOutputs = {"out.json", "out.safetensors"};

struct Split {
  nlohmann::json header;
  std::string data;
};
Split split(const std::string& file) {
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = (n << 8) | static_cast<unsigned char>(file[static_cast<size_t>(k)]);
  return {nlohmann::json::parse(file.substr(8, n)), file.substr(8 + n)};
}

// A quantized cache's file broken in its kv_scale or its byte layout. The valid file comes from
// sim_tpu (it runs every format); reading fails before any backend sees the tensors.
void add_quantized_file_rows(Table& t) {
  const std::string sim = "--config " + std::string(MLA_SOURCE_DIR) + "/configs/sc11_fp300.json";
  t.cli("files", "(setup) a valid int8 input file (per-channel kv_scale)",
        "run " + sim + " --kv-format int8 --batch 2 --heads 4 --seqlen 20 --page-size 16 --save-inputs int8.safetensors",
        0, "");
  const std::string valid = read_bytes(t.file("int8.safetensors"));
  REQUIRE(valid.size() > 64);
  const Split base = split(valid);
  auto variant = [&](const std::string& name, const std::function<void(nlohmann::json&)>& edit) {
    Split s = base;
    edit(s.header);
    t.write_text(name, assemble_safetensors(s.header.dump(), s.data));
  };
  auto run_file = [&](const std::string& input, const std::string& name, const std::string& needle) {
    t.cli("files", input, "run " + sim + " --inputs " + name + kRun, 2, needle, kOutputs);
  };
  variant("no_scale.safetensors", [](nlohmann::json& h) { h.erase("kv_scale"); });
  run_file("int8 cache without its kv_scale", "no_scale.safetensors",
           "missing tensor \"kv_scale\": the int8 KV format (kv_cache of int8) needs float32 [576]");
  variant("scale_shape.safetensors", [](nlohmann::json& h) { h["kv_scale"]["shape"] = {2, 288}; });
  run_file("kv_scale of the wrong shape (same bytes)", "scale_shape.safetensors",
           "kv_scale: expected fp32 [576], got fp32 [2, 288]");
  variant("scale_f16.safetensors", [](nlohmann::json& h) {
    h["kv_scale"]["dtype"] = "F16";
    h["kv_scale"]["shape"] = {1152};
  });
  run_file("kv_scale stored as F16 (wrong dtype)", "scale_f16.safetensors", "kv_scale: expected fp32 [576], got fp16 [1152]");
  variant("scale_extra.safetensors", [](nlohmann::json& h) { h["kv_cache"]["dtype"] = "F8_E4M3"; });
  run_file("fp8_e4m3 cache with int8's per-channel kv_scale", "scale_extra.safetensors",
           "kv_scale: expected fp32 [1], got fp32 [576]");
  variant("u8_width.safetensors", [](nlohmann::json& h) { h["kv_cache"]["dtype"] = "U8"; });
  run_file("U8 (fp8_ds_mla) cache whose tokens are not 656 bytes", "u8_width.safetensors",
           "kv_cache: expected uint8 [5, 16, 1, 656], got uint8 [5, 16, 1, 576]");
}

}  // namespace

void add_file_rows(Table& t) {
  // The valid starting point: inputs of a small latent problem, saved by the CLI.
  t.cli("files", "(setup) a valid input file, for reference", "run --batch 2 --heads 4 --seqlen 20 --page-size 16 "
        "--save-inputs valid.safetensors",
        0, "");
  const std::string valid = read_bytes(t.file("valid.safetensors"));
  REQUIRE(valid.size() > 64);
  const Split base = split(valid);
  auto variant = [&](const std::string& name, const std::function<void(nlohmann::json&, std::string&)>& edit) {
    Split s = base;
    edit(s.header, s.data);
    t.write_text(name, assemble_safetensors(s.header.dump(), s.data));
  };
  auto run_file = [&](const std::string& input, const std::string& name, int code, const std::string& needle) {
    t.cli("files", input, "run --inputs " + name + kRun, code, needle, kOutputs);
  };

  t.write_text("empty.safetensors", "");
  run_file("empty file", "empty.safetensors", 2, "shorter than the 8-byte header length (0 bytes)");
  t.write_text("five.safetensors", valid.substr(0, 5));
  run_file("5 bytes", "five.safetensors", 2, "shorter than the 8-byte header length (5 bytes)");
  t.write_text("cut_header.safetensors", valid.substr(0, 8 + 20));
  run_file("truncated inside the header", "cut_header.safetensors", 2, "exceeds the file");
  t.write_text("cut_data.safetensors", valid.substr(0, valid.size() - 100));
  run_file("truncated inside the data", "cut_data.safetensors", 2, "(truncated file?)");
  {
    std::string huge = valid;
    for (int k = 0; k < 8; ++k) huge[static_cast<size_t>(k)] = static_cast<char>(k == 7 ? 0x7f : 0xff);
    t.write_text("huge_header.safetensors", huge);
    run_file("header length 2^63 - 1", "huge_header.safetensors", 2, "header length 9223372036854775807 exceeds");
  }
  {
    std::string garbled = valid;
    garbled[8] = 'x';  // the header's opening brace
    t.write_text("garbled.safetensors", garbled);
    run_file("header is not JSON", "garbled.safetensors", 2, "header is not a JSON object");
  }
  t.write_text("array.safetensors", assemble_safetensors("[1, 2, 3]", ""));
  run_file("header is a JSON array", "array.safetensors", 2, "header is not a JSON object");
  variant("no_dtype.safetensors", [](nlohmann::json& h, std::string&) { h["q"].erase("dtype"); });
  run_file("tensor entry without dtype", "no_dtype.safetensors", 2, "tensor \"q\" needs dtype, shape and data_offsets");
  variant("bad_dtype.safetensors", [](nlohmann::json& h, std::string&) { h["q"]["dtype"] = "Q4_K"; });
  run_file("unknown dtype name", "bad_dtype.safetensors", 2, "tensor \"q\" has unsupported dtype \"Q4_K\"");
  variant("neg_shape.safetensors", [](nlohmann::json& h, std::string&) { h["q"]["shape"][0] = -2; });
  run_file("negative extent in a shape", "neg_shape.safetensors", 2, "tensor \"q\" has an invalid shape");
  variant("rank5.safetensors", [](nlohmann::json& h, std::string&) { h["q"]["shape"].push_back(1); });
  run_file("rank 5 tensor", "rank5.safetensors", 2, "has rank 5 (at most 4 supported)");
  variant("reversed.safetensors", [](nlohmann::json& h, std::string&) {
    auto offs = h["q"]["data_offsets"];
    h["q"]["data_offsets"] = {offs[1], offs[0]};
  });
  run_file("data_offsets reversed", "reversed.safetensors", 2, "fall outside the");
  variant("size_mismatch.safetensors", [](nlohmann::json& h, std::string&) { h["q"]["shape"][2] = 3; });
  run_file("byte count does not match the shape", "size_mismatch.safetensors", 2, "bytes, its dtype and shape need");
  variant("missing.safetensors", [](nlohmann::json& h, std::string&) { h.erase("cache_seqlens"); });
  run_file("a required tensor is missing", "missing.safetensors", 2, "missing tensor \"cache_seqlens\"");
  variant("table_f32.safetensors", [](nlohmann::json& h, std::string&) { h["block_table"]["dtype"] = "F32"; });
  run_file("block_table stored as F32 (wrong dtype)", "table_f32.safetensors", 2, "block_table: expected int32");
  variant("kv_f16.safetensors", [](nlohmann::json& h, std::string&) { h["kv_cache"]["dtype"] = "F16"; });
  // Not an error: a cache of another float dtype than q is widened by the kernels (no outputs
  // are named, so nothing is left behind).
  t.cli("files", "kv_cache in F16 with a BF16 q (mixed dtypes: runs, the cache is widened)", "run --inputs kv_f16.safetensors",
        0, "");
  variant("kv_width.safetensors", [](nlohmann::json& h, std::string&) {
    // Same bytes, rows of 288 instead of 576: the width no longer matches q's.
    h["kv_cache"]["shape"][3] = 288;
    h["kv_cache"]["shape"][2] = 2;
  });
  run_file("kv_cache row width differs from q's", "kv_width.safetensors", 2, "kv_cache: expected bf16");
  {
    // cache_seqlens[0] beyond the block table's capacity, then a block id out of range.
    Split s = base;
    const uint64_t at = s.header["cache_seqlens"]["data_offsets"][0].get<uint64_t>();
    const int32_t too_long = 1 << 20;
    std::memcpy(&s.data[at], &too_long, 4);
    t.write_text("too_long.safetensors", assemble_safetensors(s.header.dump(), s.data));
    run_file("a length beyond the block table's capacity", "too_long.safetensors", 2, "cache_seqlens[0]: expected 0 <= length <=");
    s = base;
    const uint64_t bt = s.header["block_table"]["data_offsets"][0].get<uint64_t>();
    const int32_t bad_id = 999999;
    std::memcpy(&s.data[bt], &bad_id, 4);
    t.write_text("bad_block.safetensors", assemble_safetensors(s.header.dump(), s.data));
    run_file("a block id out of range (checked on load)", "bad_block.safetensors", 2,
             "block_table[0][0]: expected a block id in [0, ");
  }
  {
    // 4.5 MB of absorb tensors whose extents multiply to a 275 GB output: w_uk has the wrong
    // shape, and the inputs are checked against each other before any output is allocated.
    const int64_t rows = 4096 * 256;
    nlohmann::json h;
    std::string data;
    auto add = [&](const char* name, const char* dtype, std::vector<int64_t> shape, size_t bytes) {
      h[name] = {{"dtype", dtype}, {"shape", shape}, {"data_offsets", {data.size(), data.size() + bytes}}};
      data.append(bytes, '\0');
    };
    add("q_nope", "F32", {4096, 1, 256, 1}, 4 * rows);
    add("q_rope", "F32", {4096, 1, 256, 0}, 0);
    add("w_uk", "F32", {1, 1, 1}, 4);
    add("w_uv", "F32", {1, 1, 65536}, 4 * 65536);
    add("kv_cache", "F32", {1, 1, 1, 1}, 4);
    add("block_table", "I32", {4096, 1}, 4 * 4096);
    add("cache_seqlens", "I32", {4096}, 4 * 4096);
    t.write_text("huge_output.safetensors", assemble_safetensors(h.dump(), data));
    t.cli("files", "small file whose shapes imply a 275 GB output (w_uk of the wrong shape)",
          "run --variant absorb --inputs huge_output.safetensors" + kRun, 2, "w_uk: expected fp32 [256, 1, 1], got fp32 [1, 1, 1]",
          kOutputs);
  }
  add_quantized_file_rows(t);
  run_file("file does not exist", "no_such.safetensors", 2, "cannot open safetensors file \"no_such.safetensors\": No such file or directory");
  t.cli("files", "output file in a folder that does not exist",
        "run --batch 1 --heads 16 --seqlen 8 --output no_dir/out.safetensors", 2, "cannot write \"no_dir/out.safetensors\"",
        {"no_dir/out.safetensors"});
}

}  // namespace mla::robustness
