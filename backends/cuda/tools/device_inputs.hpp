// Operator tensors in a Device's memory for the cuda tools: uploads of poisoned host inputs
// (correctness) and fast random inputs built from a repeated random pool (benchmarks, where
// billions of host-side draws would take minutes).
#pragma once

#include <memory>
#include <vector>

#include "mla/backend.hpp"
#include "mla/inputs.hpp"

namespace mla::cuda_tools {

class DeviceTensors {
 public:
  explicit DeviceTensors(Device& device) : device_(device) {}
  ~DeviceTensors();
  DeviceTensors(const DeviceTensors&) = delete;
  DeviceTensors& operator=(const DeviceTensors&) = delete;

  // A device tensor with the host tensor's shape, filled from it.
  TensorView upload(const HostTensor& host, void* stream);
  // A device tensor of `shape`, uninitialised.
  TensorView empty(DType dtype, std::initializer_list<int64_t> shape);
  void download(HostTensor& host, const TensorView& dev, void* stream);
  [[nodiscard]] Device& device() { return device_; }

 private:
  Device& device_;
  std::vector<void*> owned_;
};

// Device copies of every tensor of `in` (outputs stay poisoned as on the host).
RunArgs upload_inputs(DeviceTensors& store, const HostInputs& in, void* stream);

// Benchmark inputs: lengths as InputSpec says, shuffled pages, q and KV random (a random pool
// of 32 Mi values tiled over the tensors), nothing poisoned. Returns the device args and the
// mean length; `problem` gets num_blocks / max_blocks_per_seq.
struct BenchInputs {
  Problem problem;
  RunArgs args;
  double mean_seqlen = 0;
};
BenchInputs make_bench_inputs(DeviceTensors& store, const Problem& base, const InputSpec& spec, void* stream);

// Fills `bytes` of device memory at `dst` with a random pool (not zeros) of `dtype` values.
void fill_random(Device& device, void* dst, size_t bytes, DType dtype, uint64_t seed, void* stream);

}  // namespace mla::cuda_tools
