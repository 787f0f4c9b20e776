// safetensors round trip and corrupt files; 16-bit float conversions.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>

#include "mla/error.hpp"
#include "mla/half.hpp"
#include "mla/inputs.hpp"
#include "mla/safetensors.hpp"

using namespace mla;

TEST_CASE("safetensors round trip keeps every byte", "[core][safetensors]") {
  HostTensor a(DType::bf16, {2, 3, 4}), b(DType::int32, {5}), c(DType::fp32, {1, 7});
  for (int64_t i = 0; i < 24; ++i) a.set(i, 0.25 * static_cast<double>(i) - 2);
  for (int64_t i = 0; i < 5; ++i) b.set(i, static_cast<double>(i * 1000 - 7));
  for (int64_t i = 0; i < 7; ++i) c.set(i, std::sin(static_cast<double>(i)));
  const std::string path = "mla_test_roundtrip.safetensors";
  write_safetensors(path, {{"a", a}, {"b", b}, {"c", c}});
  TensorMap back = read_safetensors(path);
  std::remove(path.c_str());
  REQUIRE(back.size() == 3);
  for (const auto& [name, t] : TensorMap{{"a", a}, {"b", b}, {"c", c}}) {
    const HostTensor& r = back.at(name);
    CHECK(r.view().describe() == t.view().describe());
    CHECK(std::memcmp(r.data(), t.data(), t.bytes()) == 0);
  }
}

TEST_CASE("corrupt safetensors give one-line io errors", "[core][safetensors]") {
  HostTensor a(DType::fp32, {4});
  for (int64_t i = 0; i < 4; ++i) a.set(i, 1.0);
  const std::string path = "mla_test_corrupt.safetensors";
  write_safetensors(path, {{"a", a}});
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::remove(path.c_str());
  auto error_of = [](const std::string& data) {
    try {
      parse_safetensors(data, "f");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::io_error);
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(error_of(bytes.substr(0, 5)), Catch::Contains("shorter than the 8-byte header"));
  CHECK_THAT(error_of(bytes.substr(0, bytes.size() - 3)), Catch::Contains("truncated file?"));
  std::string huge = bytes;
  huge[7] = 0x7f;
  CHECK_THAT(error_of(huge), Catch::Contains("header length"));
  std::string garbage = bytes;
  garbage[8] = '[';
  CHECK_THAT(error_of(garbage), Catch::Contains("header is not a JSON object"));
  std::string wrong_dtype = bytes;
  auto pos = wrong_dtype.find("F32");
  wrong_dtype.replace(pos, 3, "Q32");
  CHECK_THAT(error_of(wrong_dtype), Catch::Contains("unsupported dtype \"Q32\""));
}

TEST_CASE("bf16 and fp16 conversions round to nearest even and keep specials", "[core][types]") {
  CHECK(bf16_to_float(float_to_bf16(1.0f)) == 1.0f);
  CHECK(bf16_to_float(float_to_bf16(1.00390625f)) == 1.0f);        // tie -> even
  CHECK(bf16_to_float(float_to_bf16(1.01171875f)) == 1.015625f);   // tie -> even (up)
  CHECK(std::isnan(bf16_to_float(float_to_bf16(NAN))));
  CHECK(std::isinf(bf16_to_float(float_to_bf16(INFINITY))));
  // fp16 against the compiler's own conversion over a sweep of magnitudes, subnormals included.
  for (float x = 1e-8f; x < 70000.0f; x *= 1.0137f) {
    for (float v : {x, -x}) {
      const float expected = static_cast<float>(static_cast<_Float16>(v));
      INFO(v);
      CHECK(fp16_to_float(float_to_fp16(v)) == expected);
    }
  }
  CHECK(std::isnan(fp16_to_float(float_to_fp16(NAN))));
}

TEST_CASE("random inputs poison what must not be read", "[core][inputs]") {
  InputSpec spec;
  spec.seqlens = {5, 0};
  Problem p;
  p.batch = 2;
  p.h_q = 2;
  p.page_size = 4;
  HostInputs in = make_random_inputs(p, spec);
  const int32_t* table = in.block_table.as<int32_t>();
  const int64_t cols = in.problem.max_blocks_per_seq;
  CHECK(table[2] == 2147480000);         // sequence 0 uses 2 pages; the third entry is junk
  CHECK(table[cols] == 2147480000);      // sequence 1 uses none
  const int64_t row = in.problem.d_qk();
  const int64_t block = table[1];        // second page: token 4 valid, tokens 5..7 poisoned
  CHECK(std::isfinite(in.kv_cache.get((block * 4 + 0) * row)));
  CHECK(std::isnan(in.kv_cache.get((block * 4 + 1) * row)));
  CHECK(std::isnan(in.out.get(0)));
}
