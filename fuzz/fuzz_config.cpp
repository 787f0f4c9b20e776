// libFuzzer target: device configs (mla::validate_config, mla::open_device) on arbitrary text.
#include <cstddef>
#include <cstdint>

#include "fuzz_bodies.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mla::fuzz::config_one(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}
