#include "device_tensors.hpp"

namespace mla::cli {

DeviceTensors::DeviceTensors(Device& device, const HostInputs& in)
    : device_(device), on_device_(device.memory_space() == MemorySpace::device) {
  for (const RunOperand& op : kRunOperands) args_.*op.member = mirror(host_operand(in, op));
  device_.synchronize();
}

DeviceTensors::~DeviceTensors() {
  for (void* p : owned_) device_.deallocate(p);
}

TensorView DeviceTensors::mirror(const HostTensor& t) {
  if (!t.defined()) return {};
  TensorView v = t.view();
  if (!on_device_) return v;
  void* p = device_.allocate(t.bytes());
  owned_.push_back(p);
  device_.copy(p, t.data(), t.bytes(), CopyKind::host_to_device);
  v.data = p;
  v.space = MemorySpace::device;
  return v;
}

void DeviceTensors::poison_outputs(HostInputs& in) {
  in.poison_outputs();
  if (!on_device_) return;
  device_.copy(args_.out.data, in.out.data(), in.out.bytes(), CopyKind::host_to_device);
  device_.copy(args_.lse.data, in.lse.data(), in.lse.bytes(), CopyKind::host_to_device);
  device_.synchronize();
}

void DeviceTensors::fetch_outputs(HostInputs& in) {
  device_.synchronize();
  if (!on_device_) return;
  device_.copy(in.out.data(), args_.out.data, in.out.bytes(), CopyKind::device_to_host);
  device_.copy(in.lse.data(), args_.lse.data, in.lse.bytes(), CopyKind::device_to_host);
  device_.synchronize();
}

}  // namespace mla::cli
