// Portable task kernel: tiles converted to fp32, plain loops the compiler can vectorise.
#include <algorithm>
#include <cmath>
#include <limits>

#include "mla/host_tensor.hpp"
#include "task_kernel.hpp"

namespace mla::cpu {

namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

const void* key_row(const TaskArgs& a, int64_t token) {
  const int64_t block = a.block_row[token / a.page_size];
  const int64_t off = block * a.block_stride + (token % a.page_size) * a.token_stride + a.head_offset;
  return static_cast<const char*>(a.kv) + off * static_cast<int64_t>(dtype_size(a.dtype));
}

void to_f32(const void* src, DType dtype, int n, float* dst) {
  for (int k = 0; k < n; ++k) dst[k] = static_cast<float>(load_element(src, dtype, k));
}
}  // namespace

bool cpu_has_avx512_bf16() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}

void run_task_portable(const TaskArgs& a, TaskScratch& s) {
  const int rows = a.rows, d_qk = a.d_qk, d_v = a.d_v, tile = a.tile;
  s.q_f32.resize(static_cast<size_t>(rows * d_qk));
  s.kv_f32.resize(static_cast<size_t>(tile * d_qk));
  s.scores.resize(static_cast<size_t>(tile * rows));
  s.acc.assign(static_cast<size_t>(rows * d_v), 0.0f);
  s.row_max.assign(static_cast<size_t>(rows), kNegInf);
  s.row_sum.assign(static_cast<size_t>(rows), 0.0f);
  for (int r = 0; r < rows; ++r) to_f32(a.q_rows[r], a.dtype, d_qk, &s.q_f32[static_cast<size_t>(r * d_qk)]);

  int64_t end = a.begin;  // no key past the last one any row may see
  for (int r = 0; r < rows; ++r) end = std::max(end, std::min(a.end, a.visible[r]));

  for (int64_t n0 = a.begin; n0 < end; n0 += tile) {
    const int n = static_cast<int>(std::min<int64_t>(tile, end - n0));
    for (int j = 0; j < n; ++j) to_f32(key_row(a, n0 + j), a.dtype, d_qk, &s.kv_f32[static_cast<size_t>(j * d_qk)]);
    for (int r = 0; r < rows; ++r) {
      const float* q = &s.q_f32[static_cast<size_t>(r * d_qk)];
      float tile_max = kNegInf;
      for (int j = 0; j < n; ++j) {
        float score = kNegInf;
        if (n0 + j < a.visible[r]) {
          const float* k = &s.kv_f32[static_cast<size_t>(j * d_qk)];
          float part[16] = {};
          int d = 0;
          for (; d + 16 <= d_qk; d += 16)
            for (int l = 0; l < 16; ++l) part[l] += q[d + l] * k[d + l];
          for (; d < d_qk; ++d) part[0] += q[d] * k[d];
          float dot = 0;
          for (float x : part) dot += x;
          score = dot * a.scale;
        }
        s.scores[static_cast<size_t>(r * tile + j)] = score;
        tile_max = std::max(tile_max, score);
      }
      const float old_max = s.row_max[static_cast<size_t>(r)];
      const float new_max = std::max(old_max, tile_max);
      if (new_max == kNegInf) continue;  // nothing visible yet
      const float alpha = std::exp(old_max - new_max);
      float* acc = &s.acc[static_cast<size_t>(r * d_v)];
      if (alpha != 1.0f)
        for (int d = 0; d < d_v; ++d) acc[d] *= alpha;
      float sum = s.row_sum[static_cast<size_t>(r)] * alpha;
      for (int j = 0; j < n; ++j) {
        const float score = s.scores[static_cast<size_t>(r * tile + j)];
        if (score == kNegInf) continue;
        const float w = std::exp(score - new_max);
        sum += w;
        const float* v = &s.kv_f32[static_cast<size_t>(j * d_qk)];
        for (int d = 0; d < d_v; ++d) acc[d] += w * v[d];
      }
      s.row_sum[static_cast<size_t>(r)] = sum;
      s.row_max[static_cast<size_t>(r)] = new_max;
    }
  }
  for (int r = 0; r < rows; ++r) {
    const float sum = s.row_sum[static_cast<size_t>(r)];
    float* out = a.out + static_cast<int64_t>(r) * d_v;
    if (sum == 0.0f) {
      std::fill(out, out + d_v, 0.0f);
      a.lse[r] = kNegInf;
      continue;
    }
    const float inv = 1.0f / sum;
    for (int d = 0; d < d_v; ++d) out[d] = s.acc[static_cast<size_t>(r * d_v + d)] * inv;
    a.lse[r] = s.row_max[static_cast<size_t>(r)] + std::log(sum);
  }
}

}  // namespace mla::cpu
