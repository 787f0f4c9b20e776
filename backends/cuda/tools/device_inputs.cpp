#include "device_inputs.hpp"

#include "mla/kv_format.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "mla/error.hpp"
#include "mla/host_tensor.hpp"

namespace mla::cuda_tools {

DeviceTensors::~DeviceTensors() {
  for (void* p : owned_) device_.deallocate(p);
}

TensorView DeviceTensors::empty(DType dtype, std::initializer_list<int64_t> shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  void* p = device_.allocate(static_cast<size_t>(std::max<int64_t>(n, 1)) * dtype_size(dtype));
  owned_.push_back(p);
  return TensorView::contiguous(p, dtype, shape, MemorySpace::device);
}

TensorView DeviceTensors::upload(const HostTensor& host, void* stream) {
  if (!host.defined()) return {};
  void* p = device_.allocate(std::max<size_t>(host.bytes(), 1));
  owned_.push_back(p);
  device_.copy(p, host.data(), host.bytes(), CopyKind::host_to_device, stream);
  TensorView v = host.view();
  v.data = p;
  v.space = MemorySpace::device;
  return v;
}

void DeviceTensors::download(HostTensor& host, const TensorView& dev, void* stream) {
  device_.copy(host.data(), dev.data, host.bytes(), CopyKind::device_to_host, stream);
}

RunArgs upload_inputs(DeviceTensors& s, const HostInputs& in, void* stream) {
  RunArgs a;
  for (const RunOperand& op : kRunOperands) a.*op.member = s.upload(host_operand(in, op), stream);
  return a;
}

namespace {

// `bytes` of device memory at `dst` filled with copies of the host `pool`: its first bytes
// uploaded once, then tiled device-to-device.
void tile_pool(Device& device, void* dst, size_t bytes, const void* pool, size_t pool_bytes, void* stream) {
  auto* d = static_cast<unsigned char*>(dst);
  const size_t first = std::min(bytes, pool_bytes);
  device.copy(d, pool, first, CopyKind::host_to_device, stream);
  for (size_t off = first; off < bytes; off += first)
    device.copy(d + off, d, std::min(first, bytes - off), CopyKind::device_to_device, stream);
}

}  // namespace

void fill_random(Device& device, void* dst, size_t bytes, DType dtype, uint64_t seed, void* stream) {
  constexpr size_t kPoolElems = size_t{32} << 20;
  // Per thread, so tools that prepare inputs on several threads (one per GPU) need no lock.
  thread_local HostTensor pool;
  thread_local DType pool_dtype = DType::int32;
  thread_local uint64_t pool_seed = 0;
  if (!pool.defined() || pool_dtype != dtype || pool_seed != seed) {
    pool = HostTensor(dtype, {static_cast<int64_t>(kPoolElems)});
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.f, 1.f);
    for (size_t i = 0; i < kPoolElems; ++i) pool.set(static_cast<int64_t>(i), normal(rng));
    pool_dtype = dtype;
    pool_seed = seed;
  }
  tile_pool(device, dst, bytes, pool.data(), pool.bytes(), stream);
}

// An 8-bit cache for timing: a pool of normal random tokens quantized by the format's traits
// (scales calibrated to the pool's largest magnitudes, as write_kv would store them), tiled over
// the cache; kv_scale allocated and uploaded where the format has one.
static void fill_quantized_cache(DeviceTensors& store, const Problem& p, RunArgs& args, uint64_t seed, void* stream) {
  const KvFormatTraits& kv = p.kv();
  const int64_t d_qk = p.d_qk(), token_bytes = kv_token_bytes(p.kv_format, p.d_c, p.d_r);
  const int64_t tokens = p.num_blocks * p.page_size * p.h_kv;
  const int64_t pool_tokens = std::min<int64_t>(tokens, 1 << 15);
  std::vector<float> values(static_cast<size_t>(pool_tokens * d_qk)), amax(static_cast<size_t>(d_qk), 0.f);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = normal(rng);
    amax[i % static_cast<size_t>(d_qk)] = std::max(amax[i % static_cast<size_t>(d_qk)], std::fabs(values[i]));
  }
  std::vector<float> scale;
  const std::vector<int64_t> scale_shape = kv_scale_shape(p.kv_format, p.d_c, p.d_r);
  if (!scale_shape.empty()) {
    scale = kv_scale_from_amax(p.kv_format, amax);
    HostTensor host_scale(DType::fp32, scale_shape);
    std::copy(scale.begin(), scale.end(), host_scale.as<float>());
    args.kv_scale = store.upload(host_scale, stream);
  }
  HostTensor pool(DType::uint8, {pool_tokens * token_bytes});
  for (int64_t t = 0; t < pool_tokens; ++t)
    kv.quantize(values.data() + t * d_qk, scale.empty() ? nullptr : scale.data(), p.d_c, p.d_r,
                pool.as<unsigned char>() + t * token_bytes);
  tile_pool(store.device(), args.kv_cache.data, static_cast<size_t>(tokens * token_bytes), pool.data(), pool.bytes(),
            stream);
}

BenchInputs make_bench_inputs(DeviceTensors& store, const Problem& base, const InputSpec& spec, void* stream) {
  BenchInputs b;
  b.problem = base;
  Problem& p = b.problem;
  std::vector<int32_t> lens = make_seqlens(spec, p.batch, p.s_q);
  int64_t max_pages = 1, total_pages = 0;
  double sum = 0;
  for (int32_t len : lens) {
    const int64_t pages = (len + p.page_size - 1) / p.page_size;
    max_pages = std::max(max_pages, pages);
    total_pages += pages;
    sum += len;
  }
  b.mean_seqlen = sum / static_cast<double>(p.batch);
  p.max_blocks_per_seq = max_pages;
  p.num_blocks = std::max<int64_t>(total_pages, 1);

  HostTensor table(DType::int32, {p.batch, p.max_blocks_per_seq});
  std::vector<int32_t> physical(static_cast<size_t>(p.num_blocks));
  std::iota(physical.begin(), physical.end(), 0);
  std::mt19937_64 rng(spec.seed);
  std::shuffle(physical.begin(), physical.end(), rng);
  size_t next = 0;
  for (int64_t i = 0; i < p.batch; ++i)
    for (int64_t j = 0; j < p.max_blocks_per_seq; ++j)
      table.as<int32_t>()[i * p.max_blocks_per_seq + j] =
          j * p.page_size < lens[static_cast<size_t>(i)] ? physical[next++] : 0;
  HostTensor seqlens(DType::int32, {p.batch});
  std::copy(lens.begin(), lens.end(), seqlens.as<int32_t>());

  b.args.block_table = store.upload(table, stream);
  b.args.cache_seqlens = store.upload(seqlens, stream);
  b.args.q = store.empty(p.dtype, {p.batch, p.s_q, p.h_q, p.d_qk()});
  b.args.kv_cache = store.empty(p.kv().element, {p.num_blocks, p.page_size, p.h_kv, p.kv_token_elements()});
  b.args.out = store.empty(p.dtype, {p.batch, p.s_q, p.h_q, p.d_v()});
  b.args.lse = store.empty(DType::fp32, {p.batch, p.h_q, p.s_q});
  // Different pools for q and KV: equal rows would make every score a squared norm.
  if (is_quantized(p.kv_format))
    fill_quantized_cache(store, p, b.args, spec.seed + 1, stream);
  else
    fill_random(store.device(), b.args.kv_cache.data,
                static_cast<size_t>(b.args.kv_cache.numel()) * dtype_size(p.kv().element), p.kv().element,
                spec.seed + 1, stream);
  fill_random(store.device(), b.args.q.data, static_cast<size_t>(b.args.q.numel()) * dtype_size(p.dtype), p.dtype,
              spec.seed + 7, stream);
  return b;
}

}  // namespace mla::cuda_tools
