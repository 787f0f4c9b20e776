// The Hopper contiguous scheduler kernel (backends/cuda/hopper/hopper_scheduler.cu) on the
// device against the host computation of the same arithmetic (hopper_schedule_host.hpp): the
// workspace it writes must match field by field, and meet the schedule's contract. Runs on an
// sm_90 GPU only (the kernel is compiled for sm_90a); elsewhere, and in builds without CUDA, it
// SKIPs with the reason.
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "cuda/hopper_schedule_host.hpp"

#ifdef MLA_TESTS_HAVE_CUDA
#include <cuda_runtime.h>

#include "cuda/hopper/hopper_launch.hpp"
#endif

#ifdef MLA_TESTS_HAVE_CUDA
namespace {

using namespace mla::testing::hopper_schedule;
namespace pk = mla::cuda::portable;

// "" when an sm_90 device is present, else why not.
std::string no_hopper_device() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    (void)cudaGetLastError();
    return "no CUDA device";
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return "cudaGetDeviceProperties failed";
  if (prop.major != 9 || prop.minor != 0)
    return "device 0 is sm_" + std::to_string(prop.major) + std::to_string(prop.minor) +
           "; the Hopper scheduler is compiled for sm_90a only";
  return "";
}

void ok(cudaError_t status, const char* what) {
  INFO(what << ": " << cudaGetErrorString(status));
  REQUIRE(status == cudaSuccess);
}

struct DeviceWorkspace {
  int32_t* seqlens = nullptr;
  void* base = nullptr;
  size_t bytes = 0;
  DeviceWorkspace(int64_t max_batch, int64_t max_grid) {
    bytes = pk::schedule_workspace_bytes(max_batch, max_batch + max_grid + 1, 1);
    ok(cudaMalloc(&base, bytes), "cudaMalloc workspace");
    ok(cudaMalloc(&seqlens, sizeof(int32_t) * static_cast<size_t>(max_batch)), "cudaMalloc seqlens");
  }
  ~DeviceWorkspace() {
    cudaFree(base);
    cudaFree(seqlens);
  }
};

template <typename T>
std::vector<T> download(const T* src, size_t n) {
  std::vector<T> v(n);
  if (n) ok(cudaMemcpy(v.data(), src, n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
  return v;
}

// Runs the kernel on `lens` (the workspace filled with 0xA5 bytes first, so anything it leaves
// unwritten shows) and returns what it wrote.
Schedule schedule_on_device(DeviceWorkspace& ws, const std::vector<int32_t>& lens, int32_t capacity, int32_t grid) {
  const int64_t batch = static_cast<int64_t>(lens.size());
  const int64_t max_splits = batch + grid + 1;
  REQUIRE(pk::schedule_workspace_bytes(batch, max_splits, 1) <= ws.bytes);
  ok(cudaMemset(ws.base, 0xA5, ws.bytes), "cudaMemset");
  if (batch) ok(cudaMemcpy(ws.seqlens, lens.data(), sizeof(int32_t) * lens.size(), cudaMemcpyHostToDevice), "H2D");
  const pk::ScheduleLayout layout = pk::carve_schedule_layout(ws.base, batch, max_splits, 1);
  mla::cuda::hopper::launch_scheduler(ws.seqlens, static_cast<int32_t>(batch), capacity, grid, layout, nullptr);
  ok(cudaDeviceSynchronize(), "scheduler kernel");

  Schedule sc;
  sc.total_splits = download(layout.total_splits, 1)[0];
  sc.seq_splits = download(layout.seq_splits, lens.size());
  sc.seq_offset = download(layout.seq_offset, lens.size());
  sc.cta_first = download(layout.cta_first, static_cast<size_t>(grid) + 1);
  const int32_t n = sc.total_splits >= 0 && sc.total_splits <= max_splits ? sc.total_splits : 0;
  for (const pk::SplitEntry& e : download(layout.entries, static_cast<size_t>(n))) {
    REQUIRE(e.pad[0] == 0);
    REQUIRE(e.pad[1] == 0);
    REQUIRE(e.pad[2] == 0);
    sc.entries.push_back(Entry{e.seq, e.begin, e.end, e.slot, e.len});
  }
  return sc;
}

void compare(DeviceWorkspace& ws, const std::vector<int32_t>& lens, int32_t capacity, int32_t grid) {
  INFO("batch " << lens.size() << ", capacity " << capacity << ", grid " << grid);
  const Schedule dev = schedule_on_device(ws, lens, capacity, grid);
  Schedule host = schedule_on_host(lens, capacity, grid).schedule;
  host.entries.resize(static_cast<size_t>(host.total_splits));
  REQUIRE(dev.total_splits == host.total_splits);
  std::string diff;
  for (size_t i = 0; i < lens.size() && diff.empty(); ++i)
    if (dev.seq_splits[i] != host.seq_splits[i] || dev.seq_offset[i] != host.seq_offset[i])
      diff = "sequence " + std::to_string(i) + ": device splits/offset " + std::to_string(dev.seq_splits[i]) + "/" +
             std::to_string(dev.seq_offset[i]) + ", host " + std::to_string(host.seq_splits[i]) + "/" +
             std::to_string(host.seq_offset[i]);
  for (size_t k = 0; k < host.cta_first.size() && diff.empty(); ++k)
    if (dev.cta_first[k] != host.cta_first[k])
      diff = "cta_first[" + std::to_string(k) + "]: device " + std::to_string(dev.cta_first[k]) + ", host " +
             std::to_string(host.cta_first[k]);
  for (size_t e = 0; e < host.entries.size() && diff.empty(); ++e)
    if (!(dev.entries[e] == host.entries[e]))
      diff = "entry " + std::to_string(e) + ": device {" + std::to_string(dev.entries[e].seq) + ", " +
             std::to_string(dev.entries[e].begin) + ", " + std::to_string(dev.entries[e].end) + ", " +
             std::to_string(dev.entries[e].slot) + "}, host {" + std::to_string(host.entries[e].seq) + ", " +
             std::to_string(host.entries[e].begin) + ", " + std::to_string(host.entries[e].end) + ", " +
             std::to_string(host.entries[e].slot) + "}";
  INFO(diff);
  REQUIRE(diff.empty());
  const std::string why = check_schedule(lens, capacity, grid, dev);
  INFO(why);
  REQUIRE(why.empty());
}

}  // namespace
#endif

TEST_CASE("cuda hopper scheduler: the device kernel matches the host math", "[cuda][hopper_schedule][gpu]") {
#ifndef MLA_TESTS_HAVE_CUDA
  WARN("skipped: built without CUDA");
#else
  const std::string reason = no_hopper_device();
  if (!reason.empty()) {
    WARN("skipped: " + reason);
    return;
  }
  DeviceWorkspace ws(8192, 2048);
  const int32_t capacity = 64 * 4096;
  // Edge cases: one long sequence over all pieces (the CTA-wide path), many long ones (the
  // list overflows into the per-thread path), zero lengths, the largest batch, grid > 1024.
  for (int32_t grid : {1, 66, 132, 1000, 2048}) {
    compare(ws, {128 * 1024 + 17}, capacity, grid);
    compare(ws, std::vector<int32_t>(200, capacity), capacity, grid);
    compare(ws, std::vector<int32_t>(133, 0), capacity, grid);
    compare(ws, {0, 5000, 0, 0, 64, 0, 130000, -4, capacity + 9}, capacity, grid);
    compare(ws, std::vector<int32_t>(8192, 2048), capacity, grid);
    compare(ws, {}, capacity, grid);
  }
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed << " (MLA_TEST_SEED=" << seed << " replays it)");
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 500; ++trial) {
    const Case c = random_case(rng);
    INFO("trial " << trial << ", shape " << c.shape);
    compare(ws, c.lens, c.capacity, c.grid);
  }
#endif
}
