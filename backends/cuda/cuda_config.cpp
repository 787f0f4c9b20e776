#include "cuda_config.hpp"

namespace mla::cuda {

CudaConfig parse_cuda_config(ConfigReader& root) {
  CudaConfig c;
  // The device description keys a config may carry for documentation; the backend reads the
  // real figures off the device.
  for (const char* k : {"topology", "chip"}) root.mark_known(k);
  ConfigReader section = root.object("cuda");
  c.device_index = section.integer("device_index", c.device_index, 0, 1023);
  c.kernel = section.choice("kernel", c.kernel, kernel_choices());
  c.ctas_per_sm = section.integer("ctas_per_sm", c.ctas_per_sm, 0, 32);
  c.min_split_tokens = section.integer("min_split_tokens", c.min_split_tokens, 32, 1 << 20);
  c.max_stages = section.integer("max_stages", c.max_stages, 2, 4);
  section.finish();
  return c;
}

}  // namespace mla::cuda
