// Mirrors host inputs into a device's memory (a no-op view for host backends) and brings the
// outputs back, so every subcommand runs any backend the same way.
#pragma once

#include <vector>

#include "mla/inputs.hpp"
#include "mla/mla.hpp"

namespace mla::cli {

class DeviceTensors {
 public:
  DeviceTensors(Device& device, const HostInputs& inputs);
  ~DeviceTensors();
  DeviceTensors(const DeviceTensors&) = delete;
  DeviceTensors& operator=(const DeviceTensors&) = delete;

  [[nodiscard]] const RunArgs& args() const { return args_; }
  // Device backends: poison the device outputs again (NaN), so a later run must rewrite them.
  void poison_outputs(HostInputs& inputs);
  // Copies out and lse into inputs.out / inputs.lse (synchronises).
  void fetch_outputs(HostInputs& inputs);

 private:
  TensorView mirror(const HostTensor& t);
  Device& device_;
  bool on_device_;
  RunArgs args_;
  std::vector<void*> owned_;
};

}  // namespace mla::cli
