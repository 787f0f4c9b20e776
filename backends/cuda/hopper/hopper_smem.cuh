// The shared-memory layout and mbarriers of one Hopper-kernel CTA (sizes: hopper_config.cuh),
// as addresses in the shared window.
#pragma once

#include <cstdint>

#include "hopper_config.cuh"

namespace mla::cuda::hopper {

struct Smem {
  uint32_t q, kv, scales, bars;
  unsigned char* kv_ptr;
  unsigned char* scales_ptr;
  float* xch;  // [3][2 parities][kRows] + [2 warpgroups][kRows]
  // Stage s, group g (0: the V boxes of warpgroup s; 1: the other V boxes + the rope box).
  // full: the group is in the 16-bit tile; empty: its readers are done with it; staged: an
  // 8-bit format's bytes of the group have landed (to be dequantized).
  __device__ uint32_t full(int s, int g) const { return bars + 8u * (2 * s + g); }
  __device__ uint32_t empty(int s, int g) const { return bars + 8u * (4 + 2 * s + g); }
  __device__ uint32_t staged(int s, int g) const { return bars + 8u * (8 + 2 * s + g); }
  __device__ uint32_t tile(int s) const { return kv + s * kTileBytes; }
  __device__ unsigned char* tile_ptr(int s) const { return kv_ptr + s * kTileBytes; }
  __device__ uint32_t scale(int s, int g) const { return scales + (2 * s + g) * kDsScaleBytes; }
  __device__ float* max0(int parity) const { return xch + (0 * 2 + parity) * kRows; }
  __device__ float* max1(int parity) const { return xch + (1 * 2 + parity) * kRows; }
  __device__ float* scale1(int parity) const { return xch + (2 * 2 + parity) * kRows; }
  __device__ float* row_sum(int wg) const { return xch + 6 * kRows + wg * kRows; }

  // Carves the layout from the kernel's dynamic shared memory (aligned to kSmemAlign): the Q
  // tile, the stages, the exchange area, fp8_ds_mla's scales, the mbarriers.
  __device__ static Smem carve(unsigned char* smem) {
    Smem sm;
    sm.q = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
    sm.kv_ptr = smem + kTileBytes;
    sm.kv = sm.q + kTileBytes;
    unsigned char* rest = smem + size_t(kTileBytes) * (1 + kStages);
    sm.xch = reinterpret_cast<float*>(rest);
    sm.scales_ptr = rest + kExchangeBytes;
    sm.scales = static_cast<uint32_t>(__cvta_generic_to_shared(sm.scales_ptr));
    sm.bars = sm.scales + kScaleAreaBytes;
    return sm;
  }
};

}  // namespace mla::cuda::hopper
