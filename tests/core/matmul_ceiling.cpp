// Device::measure_matmul_tflops: host backends measure no matmul ceiling (nullopt), and the
// core refuses a backend's measurement that is not a finite rate above zero.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <optional>
#include <string>

#include "mla/error.hpp"
#include "mla/host_device.hpp"
#include "mla/registry.hpp"

using namespace mla;

namespace {

// A host device whose matmul measurement returns what the test sets.
class FakeDevice final : public HostDevice {
 public:
  explicit FakeDevice(std::optional<double> tflops) : tflops_(tflops) {}
  [[nodiscard]] std::string backend_name() const override { return "fake"; }
  [[nodiscard]] std::string name() const override { return "fake device"; }
  int calls = 0;

 protected:
  std::unique_ptr<Plan> do_plan(const Problem&) const override {
    fail(ErrorCode::unsupported, "fake: plans nothing");
  }
  std::optional<double> do_measure_matmul_tflops() override {
    ++calls;
    return tflops_;
  }

 private:
  std::optional<double> tflops_;
};

}  // namespace

TEST_CASE("host backends have no matmul ceiling", "[core][ceiling]") {
  for (const char* config : {"cpu.json", "sc11_fp300.json", "ascend910b.json"}) {
    INFO(config);
    auto device = open_device_from_file(std::string(MLA_SOURCE_DIR) + "/configs/" + config);
    CHECK_FALSE(device->measure_matmul_tflops().has_value());
  }
}

TEST_CASE("a backend's matmul ceiling passes through the core's check", "[core][ceiling]") {
  FakeDevice measured(512.5);
  CHECK(measured.measure_matmul_tflops() == std::optional<double>(512.5));
  CHECK(measured.measure_matmul_tflops() == std::optional<double>(512.5));
  CHECK(measured.calls == 2);  // measured anew on every call, not cached

  FakeDevice none(std::nullopt);
  CHECK_FALSE(none.measure_matmul_tflops().has_value());

  for (double bad : {0.0, -3.0, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    INFO(bad);
    FakeDevice device(bad);
    try {
      (void)device.measure_matmul_tflops();
      FAIL("a rate of " << bad << " TFLOP/s was accepted");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::internal);
      CHECK_THAT(e.what(), Catch::StartsWith("fake: matmul ceiling: expected a finite rate above 0 TFLOP/s, got "));
    }
  }
}
