// Host-side entry points of the portable (sm_80+) kernels: the device-side scheduler, the
// split-KV decode kernel and the combine kernel. Everything here is asynchronous on `stream`
// and throws mla::Error(device_error) when a launch fails.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

namespace mla::cuda::portable {

inline constexpr int kDqk = 576;  // d_c + d_r: the kernels are compiled for DeepSeek's MLA widths
inline constexpr int kDv = 512;   // d_c
// fp8_ds_mla's token, for every kernel that reads it: kDv fp8 latent bytes, four fp32 group scales,
// then the rope as bf16.
inline constexpr int kDsScaleOffset = kDv;
inline constexpr int kDsRopeOffset = kDv + 16;
inline constexpr int kDsTokenBytes = kDsRopeOffset + 2 * (kDqk - kDv);  // 656

// One contiguous key range of one sequence; written by the scheduler, read by the decode and
// combine kernels. 32 bytes so one entry is two aligned 16-byte loads.
struct SplitEntry {
  int32_t seq;
  int32_t begin;  // first key of the range
  int32_t end;    // one past the last key
  int32_t slot;   // partial-result slot, or -1 when the sequence has one split (direct write)
  int32_t len;    // the sequence's length (causal limits need it)
  int32_t pad[3];
};

// The schedule's workspace, carved from one device allocation.
struct ScheduleLayout {
  int32_t* total_splits = nullptr;  // [1]
  int32_t* work_counter = nullptr;  // [1], zeroed before every decode launch (items taken so far)
  int32_t* seq_splits = nullptr;    // [b]
  int32_t* seq_offset = nullptr;    // [b]
  SplitEntry* entries = nullptr;    // [max_splits]
  float* partial_out = nullptr;     // [max_splits, rows_per_seq, kDv]
  float* partial_lse = nullptr;     // [max_splits, rows_per_seq], log-sum-exp in natural log
  // [max_splits + 1]: with the Hopper kernel's contiguous schedule, CTA k takes entries
  // [cta_first[k], cta_first[k + 1]) (x units); unused by the portable kernel.
  int32_t* cta_first = nullptr;
};
size_t schedule_workspace_bytes(int64_t batch, int64_t max_splits, int64_t rows_per_seq);
ScheduleLayout carve_schedule_layout(void* base, int64_t batch, int64_t max_splits, int64_t rows_per_seq);

// Query rows of one CTA: 16, 32 or 64 (s_q * heads_per_kv folded into rows, padded).
enum class TileShape : int { m16 = 0, m32 = 1, m64 = 2 };
int tile_rows(TileShape shape);
int tile_threads(TileShape shape);
// staged: an 8-bit KV format (its byte staging area counts too).
size_t decode_smem_bytes(TileShape shape, int stages, bool staged = false);

enum class Elem : int { bf16 = 0, fp16 = 1 };

// How the kernel reads the KV cache (docs/kv-formats.md): the query's own 16-bit type, or one
// of the 8-bit formats, dequantized into the 16-bit shared-memory tile as it is loaded.
enum class KvRead : int32_t {
  plain = 0,          // elements of the query dtype, loaded by cp.async
  fp8_per_tensor = 1, // fp8 e4m3; kv_scale[0] folded into the scores and the output
  int8_per_channel = 2, // int8; kv_scale[c] folded into q (QK^T) and the output (P V)
  fp8_ds_mla = 3,     // 656-byte tokens: fp8 latent times its in-token group scale, bf16 rope
};

struct DecodeParams {
  const void* q = nullptr;  // [b, s_q, h_q, kDqk]
  int64_t q_stride_b = 0, q_stride_t = 0, q_stride_h = 0;
  const void* kv = nullptr;  // [blocks, page, h_kv, kDqk]
  int64_t kv_stride_block = 0, kv_stride_token = 0, kv_stride_head = 0;
  const int32_t* block_table = nullptr;
  int64_t bt_stride = 0;
  void* out = nullptr;  // [b, s_q, h_q, kDv]
  int64_t out_stride_b = 0, out_stride_t = 0, out_stride_h = 0;
  float* lse = nullptr;  // [b, h_q, s_q]
  int64_t lse_stride_b = 0, lse_stride_h = 0, lse_stride_t = 0;
  int32_t batch = 0, s_q = 1, h_q = 1, h_kv = 1, page_size = 64;
  int32_t heads_per_kv = 1;
  int32_t rows_per_group = 1;  // s_q * heads_per_kv
  int32_t m_tiles = 1;         // ceil(rows_per_group / tile rows)
  int32_t units = 1;           // h_kv * m_tiles: CTAs per split
  int32_t causal = 0;
  float scale_log2 = 0.f;      // softmax_scale * log2(e)
  KvRead kv_read = KvRead::plain;  // with kv strides in bytes for the 8-bit formats (1-byte elements)
  const float* kv_scale = nullptr; // fp8_per_tensor: [1]; int8_per_channel: [kDqk]
};

// Max CTAs of the decode kernel resident per SM (the persistent grid is this times the SMs).
int decode_occupancy(TileShape shape, Elem elem, int stages, bool staged = false);
// Raises the kernels' dynamic shared-memory limit; once per device and shape.
void prepare_decode(TileShape shape, Elem elem, int stages, bool staged = false);

void launch_scheduler(const int32_t* cache_seqlens, int32_t batch, int32_t capacity_tokens, int32_t units,
                      int32_t target_items, int32_t min_chunk, int32_t granule, const ScheduleLayout& layout,
                      cudaStream_t stream);
void launch_decode(TileShape shape, Elem elem, int stages, int grid, const DecodeParams& params,
                   const ScheduleLayout& layout, cudaStream_t stream);
// programmatic: launched as a programmatic dependent of the decode kernel just before it on the
// stream (sm_90: its launch overlaps the decode kernel's tail; it waits for its results).
void launch_combine(Elem elem, const DecodeParams& params, const ScheduleLayout& layout, cudaStream_t stream,
                    bool programmatic = false);

}  // namespace mla::cuda::portable
