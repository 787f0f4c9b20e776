// The portable split-KV decode kernel body (see decode_traits.cuh for the roles). Persistent:
// each CTA walks work items blockIdx.x, +gridDim.x, ... up to the count the scheduler wrote,
// so the grid size is fixed at plan time and the launch can live in a CUDA graph.
#pragma once

#include <cmath>

#include "decode_traits.cuh"
#include "kv_dequant.cuh"
#include "mma_sm80.cuh"

namespace mla::cuda::portable {

// Last key (exclusive) query token t may see: DESIGN 2.1's causal rule.
__device__ __forceinline__ int visible_keys(int len, int s_q, int t, bool causal) {
  if (!causal || s_q == 1) return len;
  int n = len - s_q + t + 1;
  return n < 0 ? 0 : (n > len ? len : n);
}

template <typename Traits, typename T>
__global__ void __launch_bounds__(Traits::kThreads, 1)
    decode_kernel(const DecodeParams p, const ScheduleLayout layout, const int stages) {
  constexpr int kM = Traits::kM;
  constexpr int kThreads = Traits::kThreads;
  constexpr int kNW = Traits::kNW;
  constexpr int kSTiles = Traits::kSTiles;
  constexpr int kDW = Traits::kDW;
  constexpr int kOTiles = Traits::kOTiles;
  constexpr int kCW = Traits::kColWarps;

  extern __shared__ __align__(128) unsigned char smem[];
  T* q_s = reinterpret_cast<T*>(smem);
  T* kv_s = reinterpret_cast<T*>(smem + Traits::kQBytes);
  T* p_s = reinterpret_cast<T*>(smem + Traits::kQBytes + stages * Traits::kStageBytes);
  float* red_max = reinterpret_cast<float*>(smem + Traits::kQBytes + stages * Traits::kStageBytes + Traits::kPBytes);
  float* red_sum = red_max + kCW * kM;
  // 8-bit caches: each stage's raw token bytes (kRawTokenBytes apart), dequantized into kv_s.
  unsigned char* raw_s = reinterpret_cast<unsigned char*>(red_sum + kCW * kM);
  const bool staged = p.kv_read != KvRead::plain;
  const int token_bytes = p.kv_read == KvRead::fp8_ds_mla ? kRawTokenBytes : kDqk;  // multiples of 16

  const int tid = threadIdx.x;
  const int warp = tid / 32, lane = tid % 32;
  const int rw = warp / kCW, cw = warp % kCW;  // row group, column group
  const int g = lane / 4, c = lane % 4;       // mma fragment coordinates
  const int row_a = rw * 16 + g, row_b = row_a + 8;

  const T* q_base = static_cast<const T*>(p.q);
  const T* kv_base = static_cast<const T*>(p.kv);
  const int total_items = layout.total_splits[0] * p.units;
  __shared__ int next_item;

  // Dynamic balancing: items differ in length (varlen, the last split of a sequence), so a
  // CTA takes the next one when it is free rather than a fixed stride of them.
  if (tid == 0) next_item = atomicAdd(layout.work_counter, 1);
  __syncthreads();
  for (int item = next_item; item < total_items; item = next_item) {
    const SplitEntry e = layout.entries[item / p.units];
    const int unit = item % p.units;
    const int kvh = unit / p.m_tiles, mtile = unit % p.m_tiles;
    const int n_tiles = (e.end - e.begin + kBlockN - 1) / kBlockN;

    // Q tile: rows of (token, head) pairs of this KV head; padded rows read as zeros.
    for (int idx = tid; idx < kM * kChunks; idx += kThreads) {
      const int r = idx / kChunks, ch = idx % kChunks;
      const int gr = mtile * kM + r;
      const bool valid = gr < p.rows_per_group;
      const int t = valid ? gr / p.heads_per_kv : 0;
      const int head = kvh * p.heads_per_kv + (valid ? gr % p.heads_per_kv : 0);
      const T* src = q_base + e.seq * p.q_stride_b + t * p.q_stride_t + head * p.q_stride_h + ch * 8;
      cp_async_16(q_s + r * kRowStride + ch * 8, src, valid);
    }
    // One KV tile: thread owns one key and every kThreadsPerKey-th chunk of its row. Keys past
    // the range are zero-filled and never read from global memory (they may be poison).
    auto load_tile = [&](int tile, int stage) {
      const int key_local = tid / Traits::kThreadsPerKey, sub = tid % Traits::kThreadsPerKey;
      const int key = e.begin + tile * kBlockN + key_local;
      const bool valid = key < e.end;
      const T* src = kv_base;
      if (valid) {  // strides count the cache's elements: T, or bytes for the 8-bit formats
        const int page = p.block_table[e.seq * p.bt_stride + key / p.page_size];
        const int64_t off = static_cast<int64_t>(page) * p.kv_stride_block + (key % p.page_size) * p.kv_stride_token +
                            kvh * p.kv_stride_head;
        src = p.kv_read == KvRead::plain ? kv_base + off
                                         : reinterpret_cast<const T*>(static_cast<const uint8_t*>(p.kv) + off);
      }
      T* dst = kv_s + stage * (kBlockN * kRowStride) + key_local * kRowStride;
      if (p.kv_read == KvRead::plain) {
        for (int ch = sub; ch < kChunks; ch += Traits::kThreadsPerKey) cp_async_16(dst + ch * 8, src + ch * 8, valid);
        return;
      }
      // 8-bit formats: the token's bytes into the stage's staging area (zeros past the range,
      // never read: they may be poison); dequantize_stage turns them into the 16-bit tile.
      unsigned char* raw = raw_s + (stage * kBlockN + key_local) * kRawTokenBytes;
      const unsigned char* bytes = reinterpret_cast<const unsigned char*>(src);
      for (int ch = sub; ch < token_bytes / 16; ch += Traits::kThreadsPerKey)
        cp_async_16(raw + ch * 16, bytes + ch * 16, valid);
    };
    // A staged tile's bytes (landed: after the wait and barrier) as the 16-bit tile of the stage.
    auto dequantize_stage = [&](int stage) {
      const unsigned char* raw0 = raw_s + stage * kBlockN * kRawTokenBytes;
      T* dst0 = kv_s + stage * (kBlockN * kRowStride);
      for (int idx = tid; idx < kBlockN * kChunks; idx += kThreads) {
        const int key = idx / kChunks, ch = idx % kChunks;
        const unsigned char* bytes = raw0 + key * kRawTokenBytes;
        uint4 v;
        if (p.kv_read != KvRead::fp8_ds_mla) {
          v = dequantize_chunk<T>(*reinterpret_cast<const uint2*>(bytes + ch * 8), p.kv_read == KvRead::int8_per_channel, 1.f);
        } else if (ch < kDv / 8) {  // latent: 8 fp8 of group ch / 16 (128 values per scale)
          const float scale = *reinterpret_cast<const float*>(bytes + kDsScaleOffset + 4 * (ch / 16));
          v = dequantize_chunk<T>(*reinterpret_cast<const uint2*>(bytes + ch * 8), false, scale);
        } else {  // rope: 8 bf16 after the 4 scales
          const uint2* r = reinterpret_cast<const uint2*>(bytes + kDsRopeOffset + (ch - kDv / 8) * 16);
          v = rope_chunk<T>(r[0], r[1]);
        }
        *reinterpret_cast<uint4*>(dst0 + key * kRowStride + ch * 8) = v;
      }
    };
    if (n_tiles > 0) load_tile(0, 0);
    cp_async_commit();
    for (int s = 1; s < stages - 1; ++s) {
      if (s < n_tiles) load_tile(s, s);
      cp_async_commit();
    }

    // Per-row key limits: the range end and the causal rule.
    auto row_limit = [&](int r) {
      const int gr = mtile * kM + r;
      const int t = gr < p.rows_per_group ? gr / p.heads_per_kv : 0;
      return min(e.end, visible_keys(e.len, p.s_q, t, p.causal != 0));
    };
    const int limit_a = row_limit(row_a), limit_b = row_limit(row_b);
    // fp8 per-tensor: kv_scale[0] multiplies every key, so it multiplies every score.
    const float qk_scale = p.kv_read == KvRead::fp8_per_tensor ? p.scale_log2 * p.kv_scale[0] : p.scale_log2;

    float acc[kOTiles][4];
#pragma unroll
    for (int j = 0; j < kOTiles; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
    float m_a = -INFINITY, m_b = -INFINITY;  // running max, log2 domain
    float l_a = 0.f, l_b = 0.f;              // this thread's share of the row sums

    for (int i = 0; i < n_tiles; ++i) {
      cp_async_wait_dynamic(stages - 2);
      __syncthreads();  // tile i visible to all; stage (i-1) % stages free again
      if (i + stages - 1 < n_tiles) load_tile(i + stages - 1, (i + stages - 1) % stages);
      cp_async_commit();
      if (i == 0 && p.kv_read == KvRead::int8_per_channel) {
        // The Q tile has landed (group 0): fold the per-channel scales into it, q_c * s_c.
        for (int idx = tid; idx < kM * kDqk / 2; idx += kThreads) {
          const int r = idx / (kDqk / 2), d = 2 * (idx % (kDqk / 2));
          uint32_t* pair = reinterpret_cast<uint32_t*>(q_s + r * kRowStride + d);
          const T* q2 = reinterpret_cast<const T*>(pair);
          *pair = ElemOps<T>::pack(static_cast<float>(q2[0]) * p.kv_scale[d], static_cast<float>(q2[1]) * p.kv_scale[d + 1]);
        }
        __syncthreads();
      }
      if (staged) {
        dequantize_stage(i % stages);
        __syncthreads();  // the 16-bit tile complete
      }

      const T* k_s = kv_s + (i % stages) * (kBlockN * kRowStride);
      // ---- S = Q K^T for 16 rows x kNW keys ----
      // Two accumulators per n8 tile (even / odd 16-dim steps): halves the chain of dependent
      // MMAs, which bounds the 1-tile warps of the 16- and 32-row shapes.
      float s[kSTiles][4], s2[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int j = 0; j < kSTiles; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
      const T* a_ptr = q_s + (rw * 16 + (lane % 16)) * kRowStride + (lane / 16) * 8;
#pragma unroll 6
      for (int kk = 0; kk < kDqk; kk += 32) {
        uint32_t a0[4], a1[4];
        ldmatrix_x4(a0, a_ptr + kk);
        ldmatrix_x4(a1, a_ptr + kk + 16);
        if constexpr (kSTiles == 1) {
          // 8 keys x 32 dims: matrices (keys, dims 0-7 | 8-15 | 16-23 | 24-31)
          uint32_t b[4];
          ldmatrix_x4(b, k_s + (cw * kNW + (lane % 8)) * kRowStride + kk + (lane / 8) * 8);
          Mma<T>::run(s[0], a0, b[0], b[1]);
          Mma<T>::run(s2, a1, b[2], b[3]);
        } else {
          // 16 keys x 16 dims per load: matrices (keys 0-7 | 8-15) x (dims 0-7 | 8-15)
          // Two n8 tiles already give two independent chains; a second accumulator set would
          // push the 128-register O accumulator out of registers (seen: 512-byte stack frame).
          const T* b_ptr = k_s + (cw * kNW + (lane / 16) * 8 + (lane % 8)) * kRowStride + kk + ((lane / 8) % 2) * 8;
          uint32_t b[4];
          ldmatrix_x4(b, b_ptr);
          Mma<T>::run(s[0], a0, b[0], b[1]);
          Mma<T>::run(s[1], a0, b[2], b[3]);
          ldmatrix_x4(b, b_ptr + 16);
          Mma<T>::run(s[0], a1, b[0], b[1]);
          Mma<T>::run(s[1], a1, b[2], b[3]);
        }
      }
      if constexpr (kSTiles == 1) {
#pragma unroll
        for (int v = 0; v < 4; ++v) s[0][v] += s2[v];
      }

      // ---- mask, scale, row max across the COL_WARPS warps of the row group ----
      const int key0 = e.begin + i * kBlockN + cw * kNW + 2 * c;
      float mx_a = -INFINITY, mx_b = -INFINITY;
#pragma unroll
      for (int j = 0; j < kSTiles; ++j) {
#pragma unroll
        for (int v = 0; v < 2; ++v) {
          const int key = key0 + j * 8 + v;
          s[j][v] = key < limit_a ? s[j][v] * qk_scale : -INFINITY;
          s[j][2 + v] = key < limit_b ? s[j][2 + v] * qk_scale : -INFINITY;
          mx_a = fmaxf(mx_a, s[j][v]);
          mx_b = fmaxf(mx_b, s[j][2 + v]);
        }
      }
#pragma unroll
      for (int off = 1; off < 4; off *= 2) {
        mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, off));
        mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, off));
      }
      if (c == 0) {
        red_max[cw * kM + row_a] = mx_a;
        red_max[cw * kM + row_b] = mx_b;
      }
      __syncthreads();
#pragma unroll
      for (int w = 0; w < kCW; ++w) {
        mx_a = fmaxf(mx_a, red_max[w * kM + row_a]);
        mx_b = fmaxf(mx_b, red_max[w * kM + row_b]);
      }
      const float new_a = fmaxf(m_a, mx_a), new_b = fmaxf(m_b, mx_b);
      // A row with nothing visible yet keeps max -inf; subtract 0 instead so exp2 gives 0, not NaN.
      const float use_a = new_a == -INFINITY ? 0.f : new_a, use_b = new_b == -INFINITY ? 0.f : new_b;
      const float alpha_a = exp2f(m_a - use_a), alpha_b = exp2f(m_b - use_b);
      m_a = new_a;
      m_b = new_b;
      l_a *= alpha_a;
      l_b *= alpha_b;
#pragma unroll
      for (int j = 0; j < kSTiles; ++j) {
        const float p0 = exp2f(s[j][0] - use_a), p1 = exp2f(s[j][1] - use_a);
        const float p2 = exp2f(s[j][2] - use_b), p3 = exp2f(s[j][3] - use_b);
        l_a += p0 + p1;
        l_b += p2 + p3;
        const int col = cw * kNW + j * 8 + 2 * c;
        *reinterpret_cast<uint32_t*>(p_s + row_a * kPStride + col) = ElemOps<T>::pack(p0, p1);
        *reinterpret_cast<uint32_t*>(p_s + row_b * kPStride + col) = ElemOps<T>::pack(p2, p3);
      }
#pragma unroll
      for (int j = 0; j < kOTiles; ++j) {
        acc[j][0] *= alpha_a;
        acc[j][1] *= alpha_a;
        acc[j][2] *= alpha_b;
        acc[j][3] *= alpha_b;
      }
      __syncthreads();  // P complete

      // ---- O += P V: 16 rows x kDW columns, V = first kDv dims of the K tile ----
#pragma unroll
      for (int ks = 0; ks < kBlockN / 16; ++ks) {
        uint32_t a[4];
        ldmatrix_x4(a, p_s + (rw * 16 + (lane % 16)) * kPStride + ks * 16 + (lane / 16) * 8);
        const T* v_ptr = k_s + (ks * 16 + ((lane / 8) % 2) * 8 + (lane % 8)) * kRowStride + cw * kDW + (lane / 16) * 8;
#pragma unroll
        for (int j = 0; j < kOTiles; j += 2) {
          uint32_t b[4];
          ldmatrix_x4_trans(b, v_ptr + j * 8);
          Mma<T>::run(acc[j], a, b[0], b[1]);
          Mma<T>::run(acc[j + 1], a, b[2], b[3]);
        }
      }
    }
    cp_async_wait<0>();  // nothing may land in shared memory after this item

    // ---- row sums: the quad, then the COL_WARPS warps of the row group ----
#pragma unroll
    for (int off = 1; off < 4; off *= 2) {
      l_a += __shfl_xor_sync(0xffffffffu, l_a, off);
      l_b += __shfl_xor_sync(0xffffffffu, l_b, off);
    }
    if (c == 0) {
      red_sum[cw * kM + row_a] = l_a;
      red_sum[cw * kM + row_b] = l_b;
    }
    __syncthreads();
    float sum_a = 0.f, sum_b = 0.f;
#pragma unroll
    for (int w = 0; w < kCW; ++w) {
      sum_a += red_sum[w * kM + row_a];
      sum_b += red_sum[w * kM + row_b];
    }

    // ---- epilogue: normalised rows to `out` (single split) or to the partial slot ----
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = half == 0 ? row_a : row_b;
      const float sum = half == 0 ? sum_a : sum_b;
      const float m = half == 0 ? m_a : m_b;
      const int gr = mtile * kM + r;
      if (gr >= p.rows_per_group) continue;
      const int t = gr / p.heads_per_kv;
      const int head = kvh * p.heads_per_kv + gr % p.heads_per_kv;
      const bool empty = !(sum > 0.f);
      const float inv = empty ? 0.f : 1.f / sum;
      const float lse = empty ? INFINITY : (m + log2f(sum)) * 0.69314718055994530942f;
      // fp8 per-tensor / int8 per-channel: the value scale of output column d.
      auto vscale = [&](int d) {
        return p.kv_read == KvRead::fp8_per_tensor     ? p.kv_scale[0]
               : p.kv_read == KvRead::int8_per_channel ? p.kv_scale[d]
                                                       : 1.f;
      };
      if (e.slot < 0) {
        T* o = static_cast<T*>(p.out) + e.seq * p.out_stride_b + t * p.out_stride_t + head * p.out_stride_h + cw * kDW;
#pragma unroll
        for (int j = 0; j < kOTiles; ++j) {
          const int d = cw * kDW + j * 8 + 2 * c;
          *reinterpret_cast<uint32_t*>(o + j * 8 + 2 * c) =
              ElemOps<T>::pack(acc[j][2 * half] * inv * vscale(d), acc[j][2 * half + 1] * inv * vscale(d + 1));
        }
        if (c == 0 && cw == 0) p.lse[e.seq * p.lse_stride_b + head * p.lse_stride_h + t * p.lse_stride_t] = lse;
      } else {
        const int prow = t * p.h_q + head;
        const int64_t rows_per_seq = static_cast<int64_t>(p.s_q) * p.h_q;
        float* o = layout.partial_out + (e.slot * rows_per_seq + prow) * kDv + cw * kDW;
#pragma unroll
        for (int j = 0; j < kOTiles; ++j) {
          const int d = cw * kDW + j * 8 + 2 * c;
          *reinterpret_cast<float2*>(o + j * 8 + 2 * c) =
              make_float2(acc[j][2 * half] * inv * vscale(d), acc[j][2 * half + 1] * inv * vscale(d + 1));
        }
        if (c == 0 && cw == 0) layout.partial_lse[e.slot * rows_per_seq + prow] = empty ? -INFINITY : lse;
      }
    }
    __syncthreads();  // every thread is done with shared memory and has read next_item
    if (tid == 0) next_item = atomicAdd(layout.work_counter, 1);
    __syncthreads();
  }
}

}  // namespace mla::cuda::portable
