// TMA tensor maps over a paged KV cache, for the Hopper kernel (hopper/hopper_kernel.cu).
#pragma once

#include <cuda.h>

#include <cstdint>

#include "../portable/portable_launch.hpp"

namespace mla::cuda::hopper {

// A 3D tensor map over the cache [blocks][64 tokens][token width] of `elem_bytes`-byte elements
// (the cache's token and block strides from `p`): boxes of `box_cols` elements x 64 tokens of
// one block, fetched by coordinates (column, 0, block). Columns past `token_width` read as zeros.
// l2_promotion: 0, 128 or 256 bytes. Error(device_error) if the driver refuses.
CUtensorMap make_kv_map(const portable::DecodeParams& p, CUtensorMapDataType type, int elem_bytes, int token_width,
                        int64_t kv_blocks, int box_cols, CUtensorMapSwizzle swizzle, int l2_promotion);

}  // namespace mla::cuda::hopper
