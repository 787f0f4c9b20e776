// mla_device_allocate with sizes near SIZE_MAX: the 256-byte rounding used to wrap and hand
// back a tiny buffer with success. Every such size must fail with MLA_ERROR_OUT_OF_MEMORY and
// a null pointer; a plain size still works.
#include <catch2/catch.hpp>

#include <cstdint>

#include "c_api/c_api_support.hpp"

using namespace mla::testing;

TEST_CASE("c_api: allocations near SIZE_MAX fail cleanly instead of wrapping", "[c_api]") {
  DeviceHandle device(open_cpu_device_c());
  for (size_t bytes : {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 200, SIZE_MAX - 255, SIZE_MAX - 256, SIZE_MAX / 2,
                       (SIZE_MAX >> 8) + 1}) {
    INFO("bytes " << bytes);
    mla_allocate_args alloc{};
    alloc.struct_size = sizeof alloc;
    alloc.device = device.get();
    alloc.bytes = bytes;
    alloc.ptr = reinterpret_cast<void*>(uintptr_t{16});  // must come back null
    Status status(mla_device_allocate(&alloc));
    REQUIRE(status);
    CHECK(mla_status_get_code(status.get()) == MLA_ERROR_OUT_OF_MEMORY);
    CHECK(std::string(mla_status_message(status.get())).find(std::to_string(bytes)) != std::string::npos);
    CHECK(alloc.ptr == nullptr);
  }
  mla_allocate_args alloc{};
  alloc.struct_size = sizeof alloc;
  alloc.device = device.get();
  alloc.bytes = 300;
  REQUIRE(!Status(mla_device_allocate(&alloc)));
  CHECK(alloc.ptr != nullptr);
  mla_device_deallocate(device.get(), alloc.ptr);
}
