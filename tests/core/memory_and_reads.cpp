// Sizes and bounded reads: byte-size parsing, the memory estimate against what is really
// allocated, overflow-safe tensor sizes, text inputs with a limit, safetensors read from a
// stream only as far as the header declares, a byte limit, and overlapping tensors.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

#include "mla/error.hpp"
#include "mla/input_file.hpp"
#include "mla/memory.hpp"
#include "mla/safetensors.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using namespace mla;

TEST_CASE("byte sizes parse with units and saturate instead of wrapping", "[memory]") {
  CHECK(parse_byte_size("123") == uint64_t{123});
  CHECK(parse_byte_size("64K") == uint64_t{64} << 10);
  CHECK(parse_byte_size("512M") == uint64_t{512} << 20);
  CHECK(parse_byte_size("8G") == uint64_t{8} << 30);
  CHECK(parse_byte_size("8GiB") == uint64_t{8} << 30);
  CHECK(parse_byte_size("1.5G") == uint64_t{3} << 29);
  for (const char* bad : {"", "G", "lots", "-1", "1Q", "inf", "nan", "1e30"}) {
    INFO(bad);
    CHECK(!parse_byte_size(bad));
  }
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  CHECK(saturating_mul(max / 2, 3) == max);
  CHECK(saturating_add(max - 1, 2) == max);
  CHECK(tensor_bytes(DType::fp32, {int64_t{1} << 40, int64_t{1} << 40}) == max);
  CHECK(format_bytes(512) == "512 B");
  CHECK(format_bytes(uint64_t{3} << 29) == "1.50 GiB");
  CHECK(host_memory_bytes() > 0);
  CHECK(default_host_memory_limit() < host_memory_bytes());
}

TEST_CASE("the memory estimate of a problem is exactly what its random inputs allocate", "[memory]") {
  std::mt19937_64 rng(std::random_device{}());
  for (int k = 0; k < 6; ++k) {
    const Variant variant = k % 2 ? Variant::absorb : Variant::latent;
    Problem p = testing::small_problem(1 + static_cast<int64_t>(rng() % 4), 1 + static_cast<int64_t>(rng() % 3), 16, 1,
                                       false, 1 + static_cast<int64_t>(rng() % 40), variant,
                                       k % 3 == 0 ? DType::fp32 : DType::bf16);
    InputSpec spec;
    spec.seqlen = static_cast<int64_t>(rng() % 300);
    spec.varlen = rng() % 2;
    spec.seed = rng();
    std::vector<int32_t> lens;
    const Problem sized = random_inputs_problem(p, spec, &lens);
    HostInputs in = make_random_inputs(p, spec);
    CHECK(lens == in.seqlens);
    CHECK(sized.num_blocks == in.problem.num_blocks);
    CHECK(sized.max_blocks_per_seq == in.problem.max_blocks_per_seq);
    uint64_t real = 0;
    for (const HostTensor* t : {&in.q, &in.q_nope, &in.q_rope, &in.w_uk, &in.w_uv, &in.kv_cache, &in.block_table,
                                &in.cache_seqlens, &in.out, &in.lse})
      real += t->bytes();
    CHECK(problem_tensors(sized).total() == real);
  }
}

TEST_CASE("host tensors and host allocations refuse sizes that would wrap", "[memory]") {
  CHECK_THROWS_WITH(HostTensor(DType::fp32, {int64_t{1} << 62, 4}), Catch::Contains("larger than the address space") ||
                                                                       Catch::Contains("more than 2^63"));
  CHECK_THROWS_WITH(HostTensor(DType::fp64, {int64_t{1} << 40, int64_t{1} << 30}), Catch::Contains("2^63"));
  auto device = open_device(testing::config_for("cpu"));
  try {
    (void)device->allocate(std::numeric_limits<size_t>::max() - 100);
    FAIL("allocate returned");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::out_of_memory);
  }
}

namespace {
struct Dir {
  fs::path path = fs::temp_directory_path() / ("mla_reads_" + std::to_string(getpid()));
  Dir() {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~Dir() { fs::remove_all(path); }
  [[nodiscard]] std::string operator()(const std::string& n) const { return (path / n).string(); }
};
}  // namespace

TEST_CASE("text inputs are read up to their limit, streams included", "[reads]") {
  Dir d;
  std::ofstream(d("ok.json")) << "{\"a\": 1}";
  CHECK(read_text_file(d("ok.json"), 100, "config file") == "{\"a\": 1}");
  CHECK_THROWS_WITH(read_text_file(d("ok.json"), 4, "config file"), Catch::Contains("has 8 bytes, more than the limit of 4"));
  CHECK_THROWS_WITH(read_text_file("/dev/zero", 1000, "cases file"),
                    Catch::Contains("the cases file goes on past the limit of 1000 bytes (a stream"));
  CHECK(read_text_file("/dev/null", 10, "config file").empty());
  CHECK_THROWS_WITH(read_text_file(d.path.string(), 10, "config file"), Catch::Contains("it is a directory"));
  // A stream that ends within the limit is read whole.
  REQUIRE(mkfifo(d("f").c_str(), 0600) == 0);
  std::thread writer([&] { std::ofstream(d("f")) << std::string(5000, 'x'); });
  CHECK(read_text_file(d("f"), 5000, "config file").size() == 5000);
  writer.join();
}

TEST_CASE("safetensors: streams, byte limits, overlapping tensors", "[reads]") {
  Dir d;
  HostTensor a(DType::fp32, {3, 5}), b(DType::int32, {7});
  for (int64_t i = 0; i < 15; ++i) a.set(i, static_cast<double>(i) * 0.5);
  for (int64_t i = 0; i < 7; ++i) b.set(i, static_cast<double>(-i));
  write_safetensors(d("t.safetensors"), {{"a", a}, {"b", b}}, {{"mla.note", "x"}});
  SafetensorsFile f = read_safetensors_file(d("t.safetensors"));
  CHECK(f.metadata.at("mla.note") == "x");
  CHECK(f.tensors.at("a").get(14) == 7.0);
  CHECK(f.tensors.at("b").get(6) == -6.0);
  CHECK_THROWS_WITH(read_safetensors_file(d("t.safetensors"), 50), Catch::Contains("its tensors need 88 B, more than the memory limit of 50 B"));

  // The same file through a FIFO, followed by garbage that must not be read.
  REQUIRE(mkfifo(d("p").c_str(), 0600) == 0);
  std::thread writer([&] {
    (void)std::system(("cat '" + d("t.safetensors") + "' /dev/zero > '" + d("p") + "' 2>/dev/null").c_str());
  });
  SafetensorsFile g = read_safetensors_file(d("p"));
  writer.join();
  CHECK(g.tensors.at("a").get(3) == 1.5);

  const std::string bytes = [&] {
    std::ifstream in(d("t.safetensors"), std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  // Overlap: b's range moved onto a's.
  std::string header = R"({"a":{"dtype":"F32","shape":[3,5],"data_offsets":[0,60]},"b":{"dtype":"I32","shape":[7],"data_offsets":[32,60]}})";
  std::string file(8, '\0');
  for (int k = 0; k < 8; ++k) file[static_cast<size_t>(k)] = static_cast<char>((header.size() >> (8 * k)) & 0xff);
  file += header + std::string(60, '\0');
  CHECK_THROWS_WITH(parse_safetensors(file, "o"), Catch::Contains("tensors \"b\" [32, 60) and \"a\"") ||
                                                    Catch::Contains("overlap in the data section"));
  CHECK_THROWS_WITH(parse_safetensors(file, "o"), Catch::Contains("overlap in the data section"));
  CHECK(parse_safetensors(bytes, "t").size() == 2);
}
