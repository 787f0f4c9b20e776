// The Hopper split-KV decode kernel (roles and tile sizes: hopper_config.cuh). Persistent:
// CTA k is row tile (unit) k % units of piece k / units of the device-side schedule
// (hopper_scheduler.cu) and walks the splits [cta_first[piece], cta_first[piece + 1]). The
// `units` CTAs of one piece read the same KV blocks at about the same time, so all but the
// first find them in L2. The producer warp and the math warpgroups walk the same splits, so
// KV loads of the next split overlap the math of the current one through the 2-stage ring.
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>

#include <cmath>
#include <mutex>
#include <string>

#include "../cuda_check.hpp"
#include "hopper_config.cuh"
#include "hopper_launch.hpp"
#include "wgmma_sm90.cuh"

namespace mla::cuda::hopper {
namespace {

using portable::DecodeParams;
using portable::ScheduleLayout;
using portable::SplitEntry;

// Set to true only after scripts/gpu_check.sh passed with this kernel selected.
constexpr bool kVerified = true;

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const CUtensorMap* map, int c0, int c1, int c2,
                                            uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(
          dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
      : "memory");
}
__device__ __forceinline__ void named_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void fence_async_smem() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}
// Byte offset of 16-byte chunk `chunk` (0..7) of row `row` in a 128B-swizzled box: TMA's
// SWIZZLE_128B pattern (chunk index XOR row mod 8 within each 1024-byte atom).
__device__ __forceinline__ uint32_t swz(int row, int chunk) { return row * 128 + ((chunk ^ (row & 7)) << 4); }

__device__ __forceinline__ int visible_keys(int len, int s_q, int t, bool causal) {
  if (!causal || s_q == 1) return len;
  int n = len - s_q + t + 1;
  return n < 0 ? 0 : (n > len ? len : n);
}

__global__ void __launch_bounds__(kThreads, 1)
    hopper_decode_kernel(const __grid_constant__ CUtensorMap kv_map, const DecodeParams p,
                         const ScheduleLayout layout) {
  extern __shared__ unsigned char smem_raw[];
  const uint32_t raw = smem_u32(smem_raw);
  unsigned char* smem = smem_raw + (((raw + kSmemAlign - 1) & ~uint32_t(kSmemAlign - 1)) - raw);
  unsigned char* q_s = smem;
  unsigned char* kv_s = smem + kTileBytes;
  unsigned char* p_s = smem + size_t(kTileBytes) * (1 + kStages);  // P: 64 rows x 64 keys, 128B-swizzled
  float* red_max = reinterpret_cast<float*>(p_s + kPBytes);          // [warpgroup][row]
  float* red_sum = red_max + kMathWarpgroups * kRows;                 // [warpgroup][row]
  const uint32_t q_addr = smem_u32(q_s), kv_addr = smem_u32(kv_s), p_addr = smem_u32(p_s);
  const uint32_t bar_addr = smem_u32(red_sum + kMathWarpgroups * kRows);
  auto full_bar = [&](int s) { return bar_addr + 8u * s; };
  auto empty_bar = [&](int s) { return bar_addr + 8u * (kStages + s); };

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  if (tid == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbar_init(full_bar(s), 1);
      mbar_init(empty_bar(s), kMathThreads);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    fence_async_smem();
  }
  __syncthreads();

  const int piece = blockIdx.x / p.units, unit = blockIdx.x % p.units;
  const int item_begin = layout.cta_first[piece];
  const int item_end = layout.cta_first[piece + 1];

  if (warp >= kProducerWarp) {
    // ---------------- producer: TMA loads of KV blocks ----------------
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kProducerRegs));
    if (warp == kProducerWarp && lane == 0) {
      asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(&kv_map)) : "memory");
      uint32_t it = 0;
      for (int item = item_begin; item < item_end; ++item) {
        const SplitEntry e = layout.entries[item];
        const int n_tiles = (e.end - e.begin + kBlockN - 1) / kBlockN;
        const int first_page = e.begin / kBlockN;  // splits start on block boundaries
        for (int i = 0; i < n_tiles; ++i, ++it) {
          const int stage = it % kStages;
          const uint32_t phase = (it / kStages) & 1;
          mbar_wait(empty_bar(stage), phase ^ 1);
          const int page = p.block_table[e.seq * p.bt_stride + first_page + i];
          mbar_expect_tx(full_bar(stage), kTileBytes);
          for (int b = 0; b < kBoxes; ++b)
            tma_load_3d(kv_addr + stage * kTileBytes + b * kBoxBytes, &kv_map, b * kBoxCols, 0, page, full_bar(stage));
        }
      }
    }
  } else {
  // ---------------- math warpgroups ----------------
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kMathRegs));
  const int wg = warp / 4;          // 0 or 1: output columns [256 wg, 256 wg + 256)
  const int wtid = tid % 128;       // thread within the warpgroup
  const int wwarp = warp % 4;       // warp within the warpgroup: rows [16 wwarp, 16 wwarp + 16)
  const int g = lane / 4, c = lane % 4;
  const int row0 = wwarp * 16 + g;  // this thread's rows: row0 and row0 + 8
  const __nv_bfloat16* q_base = static_cast<const __nv_bfloat16*>(p.q);
  uint32_t it = 0;

  for (int item = item_begin; item < item_end; ++item) {
    const SplitEntry e = layout.entries[item];
    const int mtile = unit;
    const int n_tiles = (e.end - e.begin + kBlockN - 1) / kBlockN;

    // Q tile -> shared memory in the TMA 128B-swizzled box layout wgmma reads (K-major).
    // Both warpgroups must be done with the previous item's Q first.
    named_sync(kBarMath, kMathThreads);
    for (int idx = tid; idx < kRows * (kDqk / 8); idx += kMathThreads) {
      const int r = idx / (kDqk / 8), ch = idx % (kDqk / 8);
      const int gr = mtile * kRows + r;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (gr < p.rows_per_group) {
        const int t = gr / p.heads_per_kv, head = gr % p.heads_per_kv;
        v = __ldg(reinterpret_cast<const uint4*>(q_base + e.seq * p.q_stride_b + t * p.q_stride_t +
                                                 head * p.q_stride_h + ch * 8));
      }
      *reinterpret_cast<uint4*>(q_s + (ch / 8) * kBoxBytes + swz(r, ch % 8)) = v;
    }
    fence_async_smem();  // generic-proxy stores, read next by wgmma (async proxy)
    named_sync(kBarMath, kMathThreads);

    int limit[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int gr = mtile * kRows + row0 + 8 * h;
      const int t = gr < p.rows_per_group ? gr / p.heads_per_kv : 0;
      limit[h] = min(e.end, visible_keys(e.len, p.s_q, t, p.causal != 0));
    }

    float o[128];
#pragma unroll
    for (int i = 0; i < 128; ++i) o[i] = 0.f;
    float m[2] = {-INFINITY, -INFINITY};  // running max, log2 domain
    float l[2] = {0.f, 0.f};              // this thread's share of the row sums

    for (int i = 0; i < n_tiles; ++i, ++it) {
      const int stage = it % kStages;
      const uint32_t phase = (it / kStages) & 1;
      const uint32_t tile = kv_addr + stage * kTileBytes;
      mbar_wait(full_bar(stage), phase);

      // ---- S_wg = Q K[32 wg, 32 wg + 32)^T: 36 k-steps of 16 over the 576 dims ----
      float s[16];
      wgmma_fence();
#pragma unroll
      for (int k = 0; k < kDqk / 16; ++k) {
        const uint32_t off = (k / 4) * kBoxBytes + (k % 4) * 32;
        wgmma_m64n32k16_ss(s, smem_desc(q_addr + off, 16, 1024),
                           smem_desc(tile + off + wg * kKeysPerWarpgroup * 128, 16, 1024), k > 0 ? 1 : 0);
      }
      wgmma_commit();
      wgmma_wait_all();
      fence_regs(s);

      // ---- online softmax (base 2, scale folded in); masked keys -> -inf ----
      const int key0 = e.begin + i * kBlockN;
      const int key0w = key0 + wg * kKeysPerWarpgroup;
      float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int j = 0; j < kKeysPerWarpgroup / 8; ++j)
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const int h = q >> 1;
          const int key = key0w + 8 * j + 2 * c + (q & 1);
          const float v = key < limit[h] ? s[4 * j + q] * p.scale_log2 : -INFINITY;
          s[4 * j + q] = v;
          mx[h] = fmaxf(mx[h], v);
        }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
        mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
        if (c == 0) red_max[wg * kRows + row0 + 8 * h] = mx[h];
      }
      // Barrier A: both halves' row maxima are in red_max. (Also: the other warpgroup has
      // finished the previous tile's PV, so P may be overwritten below.)
      named_sync(kBarMath, kMathThreads);
      float alpha[2], base[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        mx[h] = fmaxf(mx[h], red_max[(1 - wg) * kRows + row0 + 8 * h]);
        const float m_new = fmaxf(m[h], mx[h]);  // identical in both warpgroups
        base[h] = m_new == -INFINITY ? 0.f : m_new;  // a row with nothing visible yet stays 0
        alpha[h] = exp2f(m[h] - base[h]);
        m[h] = m_new;
        l[h] *= alpha[h];
      }
#pragma unroll
      for (int j = 0; j < kKeysPerWarpgroup / 8; ++j)
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const int h = q >> 1;
          const float pv = exp2f(s[4 * j + q] - base[h]);
          s[4 * j + q] = pv;
          l[h] += pv;
        }
#pragma unroll
      for (int j = 0; j < 32; ++j) {
        o[4 * j + 0] *= alpha[0];
        o[4 * j + 1] *= alpha[0];
        o[4 * j + 2] *= alpha[1];
        o[4 * j + 3] *= alpha[1];
      }
      // This warpgroup's 32 keys of P (bf16) into the shared P tile, K-major 128B-swizzled
      // (the A operand of PV): key 32 wg + 8 j + 2 c is in 16-byte chunk 4 wg + j of its row.
#pragma unroll
      for (int j = 0; j < kKeysPerWarpgroup / 8; ++j)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int row = row0 + 8 * h;
          *reinterpret_cast<uint32_t*>(p_s + swz(row, (kKeysPerWarpgroup / 8) * wg + j) + 4 * c) =
              pack_bf16(s[4 * j + 2 * h], s[4 * j + 2 * h + 1]);
        }

      // Rows of the block past the sequence's length may hold anything (NaN): P is 0 there,
      // but 0 x NaN is NaN, so each warpgroup zeroes them in its own V boxes. (The other
      // warpgroup may still read those rows for S; it masks them, so the values do not matter.)
      const int valid_rows = e.len - key0;
      if (valid_rows < kBlockN) {
        const int bad = kBlockN - valid_rows;
        for (int idx = wtid; idx < bad * kVBoxesPerWarpgroup * 8; idx += 128) {
          const int r = valid_rows + idx / (kVBoxesPerWarpgroup * 8);
          const int rest = idx % (kVBoxesPerWarpgroup * 8);
          const int box = wg * kVBoxesPerWarpgroup + rest / 8;
          *reinterpret_cast<uint4*>(kv_s + stage * kTileBytes + box * kBoxBytes + r * 128 + (rest % 8) * 16) =
              make_uint4(0, 0, 0, 0);
        }
      }
      fence_async_smem();  // P (and zeroed rows) are read next by wgmma
      // Barrier B: the whole P tile is written.
      named_sync(kBarMath, kMathThreads);

      // ---- O[:, 256 wg ..] += P V: 4 k-steps of 16 keys, P and V from shared memory ----
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kBlockN / 16; ++kk) {
        const uint32_t vb = tile + (wg * kVBoxesPerWarpgroup) * kBoxBytes + kk * 16 * 128;
        wgmma_m64n256k16_ss_tb(o, smem_desc(p_addr + kk * 32, 16, 1024), smem_desc(vb, kBoxBytes, 1024));
      }
      wgmma_commit();
      wgmma_wait_all();
      fence_regs(o);
      mbar_arrive(empty_bar(stage));  // this thread is done with the stage
    }

    // ---- epilogue: normalise, write out + lse, or the fp32 partial of this split ----
    // Each warpgroup summed P over its own 32 keys of every block: add the other half.
    float lsum[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      lsum[h] = l[h];
      lsum[h] += __shfl_xor_sync(0xffffffffu, lsum[h], 1);
      lsum[h] += __shfl_xor_sync(0xffffffffu, lsum[h], 2);
      if (c == 0) red_sum[wg * kRows + row0 + 8 * h] = lsum[h];
    }
    named_sync(kBarMath, kMathThreads);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float sum = lsum[h] + red_sum[(1 - wg) * kRows + row0 + 8 * h];
      const int gr = mtile * kRows + row0 + 8 * h;
      if (gr >= p.rows_per_group) continue;
      const int t = gr / p.heads_per_kv, head = gr % p.heads_per_kv;
      const bool empty = !(sum > 0.f);
      const float inv = empty ? 0.f : 1.f / sum;
      const float lse = empty ? INFINITY : (m[h] + log2f(sum)) * 0.69314718055994530942f;
      const int col0 = wg * kColsPerWarpgroup + 2 * c;
      if (e.slot < 0) {
        __nv_bfloat16* out = static_cast<__nv_bfloat16*>(p.out) + e.seq * p.out_stride_b + t * p.out_stride_t +
                             head * p.out_stride_h + col0;
#pragma unroll
        for (int j = 0; j < 32; ++j)
          *reinterpret_cast<uint32_t*>(out + 8 * j) = pack_bf16(o[4 * j + 2 * h] * inv, o[4 * j + 2 * h + 1] * inv);
        if (c == 0 && wg == 0) p.lse[e.seq * p.lse_stride_b + head * p.lse_stride_h + t * p.lse_stride_t] = lse;
      } else {
        const int prow = t * p.h_q + head;
        const int64_t rows_per_seq = static_cast<int64_t>(p.s_q) * p.h_q;
        float* out = layout.partial_out + (e.slot * rows_per_seq + prow) * kDv + col0;
#pragma unroll
        for (int j = 0; j < 32; ++j)
          *reinterpret_cast<float2*>(out + 8 * j) = make_float2(o[4 * j + 2 * h] * inv, o[4 * j + 2 * h + 1] * inv);
        if (c == 0 && wg == 0) layout.partial_lse[e.slot * rows_per_seq + prow] = empty ? -INFINITY : lse;
      }
    }
  }
  }  // math warpgroups
}

PFN_cuTensorMapEncodeTiled_v12000 encode_fn() {
  static std::once_flag once;
  static PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
  static cudaError_t status = cudaSuccess;
  static cudaDriverEntryPointQueryResult query = cudaDriverEntryPointSuccess;
  std::call_once(once, [] {
    void* ptr = nullptr;
    status = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &ptr, 12000, cudaEnableDefault, &query);
    fn = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(ptr);
  });
  check(status, "cudaGetDriverEntryPointByVersion(cuTensorMapEncodeTiled)");
  if (query != cudaDriverEntryPointSuccess || !fn)
    fail(ErrorCode::device_error, "cuda: the driver has no cuTensorMapEncodeTiled (needed by the Hopper kernel)");
  return fn;
}

}  // namespace

bool verified() { return kVerified; }
int rows_per_cta() { return kRows; }
int block_keys() { return kBlockN; }
int threads_per_cta() { return kThreads; }
int max_batch() { return kMaxBatch; }
size_t smem_bytes() { return kSmemBytes; }

int prepare() {
  check(cudaFuncSetAttribute(reinterpret_cast<const void*>(&hopper_decode_kernel),
                             cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kSmemBytes)),
        "cudaFuncSetAttribute(hopper_decode_kernel shared memory)");
  int blocks = 0;
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, reinterpret_cast<const void*>(&hopper_decode_kernel),
                                                      kThreads, kSmemBytes),
        "cudaOccupancyMaxActiveBlocksPerMultiprocessor(hopper_decode_kernel)");
  return blocks;
}

void launch_decode(int grid, const DecodeParams& p, int64_t kv_blocks, const ScheduleLayout& layout,
                   cudaStream_t stream) {
  if (p.page_size != kBlockN || p.h_kv != 1)
    fail(ErrorCode::unsupported, "cuda hopper kernel: needs page size 64 and h_kv = 1");
  if (p.kv_stride_token % 8 != 0 || p.kv_stride_block % 8 != 0 || reinterpret_cast<uintptr_t>(p.kv) % 16 != 0)
    fail(ErrorCode::unsupported, "cuda hopper kernel: kv_cache strides must be multiples of 8 elements, data 16-byte aligned");
  // kv_cache as a 3D tensor [blocks][64 tokens][576 dims] (h_kv = 1): a box is 64 tokens x 64
  // dims of one block, so a block's 9 boxes are fetched by coordinates (64 b, 0, block).
  CUtensorMap map;
  const cuuint64_t dims[3] = {static_cast<cuuint64_t>(kDqk), static_cast<cuuint64_t>(kBlockN),
                              static_cast<cuuint64_t>(kv_blocks)};
  const cuuint64_t strides[2] = {static_cast<cuuint64_t>(p.kv_stride_token) * 2,
                                 static_cast<cuuint64_t>(p.kv_stride_block) * 2};
  const cuuint32_t box[3] = {kBoxCols, kBlockN, 1};
  const cuuint32_t elem_strides[3] = {1, 1, 1};
  const CUresult r = encode_fn()(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, const_cast<void*>(p.kv), dims, strides,
                                 box, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                 CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    fail(ErrorCode::device_error, "cuda: cuTensorMapEncodeTiled(kv_cache) failed with CUresult " + std::to_string(r));
  hopper_decode_kernel<<<grid, kThreads, kSmemBytes, stream>>>(map, p, layout);
  check_launch("hopper_decode_kernel launch");
}

}  // namespace mla::cuda::hopper
