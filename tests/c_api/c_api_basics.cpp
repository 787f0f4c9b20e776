// The C ABI (mla/mla.h): version, backend list, device opening, errors as statuses.
#include <cstring>
#include <string>

#include <catch2/catch.hpp>

#include "c_api/c_api_support.hpp"

using namespace mla::testing;

TEST_CASE("c_api: the library reports the header's version", "[c_api]") {
  CHECK(mla_version() == MLA_VERSION);
  CHECK(std::string(mla_version_string()) == std::to_string(MLA_VERSION_MAJOR) + "." +
                                                 std::to_string(MLA_VERSION_MINOR) + "." +
                                                 std::to_string(MLA_VERSION_PATCH));
  CHECK(mla_dtype_size(MLA_DTYPE_BF16) == 2);
  CHECK(mla_dtype_size(MLA_DTYPE_FP32) == 4);
  CHECK(mla_dtype_size(99) == 0);
}

TEST_CASE("c_api: a NULL status reads as success", "[c_api]") {
  CHECK(mla_status_get_code(nullptr) == MLA_OK);
  CHECK(std::string(mla_status_message(nullptr)).empty());
  CHECK(std::string(mla_status_backend(nullptr)).empty());
  CHECK(std::string(mla_status_code_name(MLA_ERROR_BACKEND_UNAVAILABLE)) == "backend_unavailable");
  mla_status_free(nullptr);
}

TEST_CASE("c_api: backends are listed with their availability", "[c_api]") {
  mla_backend_list* list = nullptr;
  Status status(mla_backend_list_create(&list));
  REQUIRE(!status);
  REQUIRE(list != nullptr);
  bool saw_cpu = false;
  for (size_t i = 0; i < mla_backend_list_count(list); ++i) {
    mla_backend_info info{};
    info.struct_size = sizeof info;
    Status got(mla_backend_list_get(list, i, &info));
    REQUIRE(!got);
    REQUIRE(info.name != nullptr);
    CHECK(info.reason != nullptr);
    if (std::string(info.name) == "cpu") {
      saw_cpu = true;
      CHECK(info.available == 1);
    }
  }
  CHECK(saw_cpu);

  mla_backend_info info{};
  info.struct_size = sizeof info;
  Status past_end(mla_backend_list_get(list, mla_backend_list_count(list), &info));
  CHECK(mla_status_get_code(past_end.get()) == MLA_ERROR_INVALID_ARGUMENT);
  info.struct_size = 0;  // a caller that forgot struct_size
  Status no_size(mla_backend_list_get(list, 0, &info));
  CHECK(mla_status_get_code(no_size.get()) == MLA_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(mla_status_message(no_size.get())).find("struct_size") != std::string::npos);
  mla_backend_list_free(list);
}

namespace {

// Opens with the given args and returns the status; the device must stay NULL on failure.
Status open_expecting_failure(mla_device_open_args args) {
  args.device = reinterpret_cast<mla_device*>(0x1);  // must be reset to NULL on failure
  Status status(mla_device_open(&args));
  if (args.struct_size >= sizeof args) CHECK(args.device == nullptr);
  return status;
}

}  // namespace

TEST_CASE("c_api: opening a device reports every failure as a status", "[c_api]") {
  mla_device_open_args args{};
  args.struct_size = sizeof args;

  SECTION("a missing file is an io error") {
    args.config_path = "/nonexistent/mla/config.json";
    Status status = open_expecting_failure(args);
    CHECK(mla_status_get_code(status.get()) == MLA_ERROR_IO);
    CHECK(std::string(mla_status_message(status.get())).find("/nonexistent/mla/config.json") != std::string::npos);
  }
  SECTION("malformed JSON text is an invalid config") {
    args.config_json = "{\"backend\": ";
    Status status = open_expecting_failure(args);
    CHECK(mla_status_get_code(status.get()) == MLA_ERROR_INVALID_CONFIG);
  }
  SECTION("an unknown key names its JSON path and the backend") {
    args.config_json = R"({"backend": "cpu", "cpu": {"thread": 2}})";
    Status status = open_expecting_failure(args);
    CHECK(mla_status_get_code(status.get()) == MLA_ERROR_INVALID_CONFIG);
    CHECK(std::string(mla_status_message(status.get())).find("/cpu/thread") != std::string::npos);
    CHECK(std::string(mla_status_backend(status.get())) == "cpu");
  }
  SECTION("an unavailable backend is not replaced by another") {
    args.config_json = R"({"backend": "cuda"})";
    mla_backend_list* list = nullptr;
    REQUIRE(!Status(mla_backend_list_create(&list)));
    bool cuda_available = false;
    for (size_t i = 0; i < mla_backend_list_count(list); ++i) {
      mla_backend_info info{};
      info.struct_size = sizeof info;
      REQUIRE(!Status(mla_backend_list_get(list, i, &info)));
      if (std::string(info.name) == "cuda") cuda_available = info.available != 0;
    }
    mla_backend_list_free(list);
    if (!cuda_available) {
      Status status = open_expecting_failure(args);
      CHECK(mla_status_get_code(status.get()) == MLA_ERROR_BACKEND_UNAVAILABLE);
      CHECK(std::string(mla_status_backend(status.get())) == "cuda");
    }
  }
  SECTION("path and text together are ambiguous") {
    args.config_path = "configs/cpu.json";
    args.config_json = R"({"backend": "cpu"})";
    CHECK(mla_status_get_code(open_expecting_failure(args).get()) == MLA_ERROR_INVALID_ARGUMENT);
  }
  SECTION("a struct_size of 0 is refused, not read past") {
    args.struct_size = 0;
    CHECK(mla_status_get_code(open_expecting_failure(args).get()) == MLA_ERROR_INVALID_ARGUMENT);
  }
  SECTION("NULL args are refused") {
    Status status(mla_device_open(nullptr));
    CHECK(mla_status_get_code(status.get()) == MLA_ERROR_INVALID_ARGUMENT);
  }
}

TEST_CASE("c_api: devices open from a file, from text and from the default", "[c_api]") {
  const std::string path = std::string(MLA_SOURCE_DIR) + "/configs/cpu.json";
  for (int how = 0; how < 3; ++how) {
    mla_device_open_args args{};
    args.struct_size = sizeof args;
    if (how == 0) args.config_path = path.c_str();
    if (how == 1) args.config_json = R"({"backend": "cpu", "name": "from text"})";
    Status status(mla_device_open(&args));
    INFO(how << ": " << describe(status));
    REQUIRE(!status);
    DeviceHandle device(args.device);
    CHECK(std::string(mla_device_backend(device.get())) == "cpu");
    CHECK(mla_device_memory_space(device.get()) == MLA_MEMORY_HOST);
    if (how == 1) CHECK(std::string(mla_device_name(device.get())) == "from text");
  }
}

TEST_CASE("c_api: device memory is allocated, copied and freed through the API", "[c_api]") {
  DeviceHandle device(open_cpu_device_c());
  mla_allocate_args alloc{};
  alloc.struct_size = sizeof alloc;
  alloc.device = device.get();
  alloc.bytes = 1000;
  REQUIRE(!Status(mla_device_allocate(&alloc)));
  REQUIRE(alloc.ptr != nullptr);
  CHECK(reinterpret_cast<uintptr_t>(alloc.ptr) % 256 == 0);

  const char text[] = "latent attention";
  char back[sizeof text] = {};
  mla_copy_args copy{};
  copy.struct_size = sizeof copy;
  copy.device = device.get();
  copy.dst = alloc.ptr;
  copy.src = text;
  copy.bytes = sizeof text;
  copy.kind = MLA_COPY_HOST_TO_DEVICE;
  REQUIRE(!Status(mla_device_copy(&copy)));
  copy.dst = back;
  copy.src = alloc.ptr;
  copy.kind = MLA_COPY_DEVICE_TO_HOST;
  REQUIRE(!Status(mla_device_copy(&copy)));
  REQUIRE(!Status(mla_device_synchronize(device.get(), nullptr)));
  CHECK(std::memcmp(text, back, sizeof text) == 0);

  copy.kind = 7;
  CHECK(mla_status_get_code(Status(mla_device_copy(&copy)).get()) == MLA_ERROR_INVALID_ARGUMENT);
  mla_device_deallocate(device.get(), alloc.ptr);
  mla_device_deallocate(device.get(), nullptr);
}
