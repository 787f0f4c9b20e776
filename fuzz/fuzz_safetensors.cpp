// libFuzzer target: the safetensors reader (mla::parse_safetensors) and the input checks after it.
#include <cstddef>
#include <cstdint>

#include "fuzz_bodies.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mla::fuzz::safetensors_one(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}
