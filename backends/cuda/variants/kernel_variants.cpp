#include "kernel_variant.hpp"

namespace mla::cuda {

const KernelVariant& hopper_narrow_variant();
const KernelVariant& hopper_variant();
const KernelVariant& portable_variant();

portable::KvRead kv_read_of(KvFormat format) {
  switch (format) {
    case KvFormat::fp8_e4m3: return portable::KvRead::fp8_per_tensor;
    case KvFormat::int8: return portable::KvRead::int8_per_channel;
    case KvFormat::fp8_ds_mla: return portable::KvRead::fp8_ds_mla;
    default: return portable::KvRead::plain;
  }
}

const std::vector<const KernelVariant*>& kernel_variants() {
  static const std::vector<const KernelVariant*> table = {&hopper_narrow_variant(), &hopper_variant(), &portable_variant()};
  return table;
}

}  // namespace mla::cuda
