#include "kernel_variant.hpp"

namespace mla::cuda {

const KernelVariant& hopper_narrow_variant();
const KernelVariant& hopper_variant();
const KernelVariant& portable_variant();

const std::vector<const KernelVariant*>& kernel_variants() {
  static const std::vector<const KernelVariant*> table = {&hopper_narrow_variant(), &hopper_variant(), &portable_variant()};
  return table;
}

}  // namespace mla::cuda
