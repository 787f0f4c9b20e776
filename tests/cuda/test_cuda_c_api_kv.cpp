// Every quantized KV format on the cuda backend through the C ABI alone, as an embedding
// runtime drives it: the device opened from configs/h200_sxm.json (cuda.kernel auto), every
// tensor in cudaMalloc memory, the paged cache poisoned and then filled on the GPU by
// mla_write_kv from fp32/bf16 source rows (padding tokens skipped), kv_scale calibrated and
// uploaded where the format has one, plan / schedule / run on a stream. Checked per format (the
// query dtype's plain format as the control): mla_device_supports says yes; the cache bytes the
// GPU wrote equal the cpu device's mla_write_kv bytes (poison included); out and lse against
// the float64 reference (mla_reference_check on a cpu plan of the same problem, over the same
// cache bytes) at the output dtype's tolerance, and, for 8-bit formats, against the reference
// on the unquantized values at the format's quantization tolerance; the kernel chosen on sm_90
// is the Hopper kernel named for the format (the narrow one for 8-bit caches with at most 32
// query rows). Without a CUDA device it SKIPs with the reason.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "c_api/c_api_support.hpp"
#include "mla/compare.hpp"
#include "mla/host_tensor.hpp"
#include "mla/kv_format.hpp"
#include "cuda/cuda_test_support.hpp"

#ifdef MLA_TESTS_HAVE_CUDA
#include <cuda_runtime.h>
#endif

using namespace mla::testing;

#ifdef MLA_TESTS_HAVE_CUDA
namespace {

constexpr int64_t kDc = 512, kDr = 64, kDqk = kDc + kDr, kPage = 64;

// "" when the C ABI lists the cuda backend as available here, else its reason.
std::string why_no_cuda_c() {
  mla_backend_list* list = nullptr;
  Status status(mla_backend_list_create(&list));
  if (status) return "mla_backend_list_create: " + describe(status);
  std::string reason = "cuda backend not in mla_backend_list";
  for (size_t i = 0; i < mla_backend_list_count(list); ++i) {
    mla_backend_info info{};
    info.struct_size = sizeof info;
    if (Status(mla_backend_list_get(list, i, &info)) || std::string(info.name) != "cuda") continue;
    reason = info.available ? "" : std::string(info.reason);
  }
  mla_backend_list_free(list);
  return reason;
}

void cuda_ok(cudaError_t e, const char* what) {
  INFO(what << ": " << cudaGetErrorString(e));
  REQUIRE(e == cudaSuccess);
}

void ok(mla_status* raw, const char* what) {
  Status status(raw);
  INFO(what << ": " << describe(status));
  REQUIRE(!status);
}

struct GpuBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  explicit GpuBuffer(size_t n) : bytes(n) { cuda_ok(cudaMalloc(&ptr, n), "cudaMalloc"); }
  ~GpuBuffer() { cudaFree(ptr); }
  GpuBuffer(const GpuBuffer&) = delete;
  GpuBuffer& operator=(const GpuBuffer&) = delete;
};

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { cuda_ok(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate"); }
  ~Stream() { cudaStreamDestroy(s); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
};

mla_tensor tensor(void* data, mla::DType dtype, const std::vector<int64_t>& shape, mla_memory_space space) {
  return mla_tensor_contiguous(data, static_cast<int32_t>(dtype), static_cast<int32_t>(shape.size()), shape.data(),
                               space);
}
mla_tensor host(const mla::HostTensor& t) { return to_c(t.view()); }
std::vector<int64_t> shape_of(const mla::HostTensor& t) {
  return {t.view().shape.begin(), t.view().shape.begin() + t.view().rank};
}

// A host tensor's twin in cudaMalloc memory.
struct GpuTensor {
  GpuBuffer buf;
  mla_tensor view;
  explicit GpuTensor(const mla::HostTensor& like)
      : buf(like.bytes()), view(tensor(buf.ptr, like.view().dtype, shape_of(like), MLA_MEMORY_DEVICE)) {}
};

void copy(mla_device* device, void* dst, const void* src, size_t bytes, mla_copy_kind kind, cudaStream_t stream) {
  mla_copy_args a{};
  a.struct_size = sizeof a;
  a.device = device;
  a.dst = dst;
  a.src = src;
  a.bytes = bytes;
  a.kind = kind;
  a.stream = stream;
  ok(mla_device_copy(&a), "mla_device_copy");
}

mla_status* write_kv(mla_device* device, mla::KvFormat format, const mla_tensor& kv_c, const mla_tensor& k_pe,
                     const mla_tensor& slots, const mla_tensor& cache, const mla_tensor& scale, void* stream) {
  mla_write_kv_args w{};
  w.struct_size = sizeof w;
  w.device = device;
  w.kv_format = static_cast<int32_t>(format);
  w.kv_c = kv_c;
  w.k_pe = k_pe;
  w.slot_mapping = slots;
  w.kv_cache = cache;
  w.kv_scale = scale;
  w.stream = stream;
  return mla_write_kv(&w);
}

mla_device* open_device(const char* path, const char* json) {
  mla_device_open_args a{};
  a.struct_size = sizeof a;
  a.config_path = path;
  a.config_json = json;
  ok(mla_device_open(&a), "mla_device_open");
  return a.device;
}

// A fresh seed per run; MLA_TEST_SEED=<n> replays one.
uint64_t fresh_seed() {
  if (const char* s = std::getenv("MLA_TEST_SEED")) return std::strtoull(s, nullptr, 10);
  return (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
}

struct Shape {
  int64_t h_q, s_q;
  bool causal;
  mla::DType dtype;   // q and out
  mla::DType source;  // kv_c and k_pe given to mla_write_kv
  std::vector<int32_t> lens;
};

// One shape's format-independent inputs: q, a shuffled block table (unused entries junk), the
// tokens' source rows and their slots (two padding tokens with slot -1), on the host.
struct Inputs {
  mla::Problem problem;  // kv_format set per format
  mla::HostTensor q, block_table, seqlens, kv_c, k_pe, slots;
  std::vector<char> padding;  // per token
};

Inputs make_inputs(const Shape& s, std::mt19937_64& rng) {
  Inputs in;
  mla::Problem& p = in.problem;
  p.batch = static_cast<int64_t>(s.lens.size());
  p.s_q = s.s_q;
  p.h_q = s.h_q;
  p.causal = s.causal;
  p.dtype = s.dtype;
  p.page_size = kPage;
  int64_t pages = 0, widest = 0, tokens = 2;
  for (int32_t len : s.lens) {
    pages += (len + kPage - 1) / kPage;
    widest = std::max<int64_t>(widest, (len + kPage - 1) / kPage);
    tokens += len;
  }
  p.num_blocks = pages + 2;             // two pages no sequence uses: poison throughout
  p.max_blocks_per_seq = widest + 1;    // a junk column past every sequence's pages
  std::normal_distribution<float> normal(0.0f, 1.0f);

  in.q = mla::HostTensor(p.dtype, {p.batch, p.s_q, p.h_q, kDqk});
  for (int64_t i = 0; i < in.q.view().numel(); ++i) in.q.set(i, normal(rng));
  in.seqlens = mla::HostTensor(mla::DType::int32, {p.batch});
  std::copy(s.lens.begin(), s.lens.end(), in.seqlens.as<int32_t>());
  in.block_table = mla::HostTensor(mla::DType::int32, {p.batch, p.max_blocks_per_seq});
  in.block_table.fill_nan();  // junk ids; the used entries get real ones below
  std::vector<int32_t> physical(static_cast<size_t>(p.num_blocks));
  std::iota(physical.begin(), physical.end(), 0);
  std::shuffle(physical.begin(), physical.end(), rng);

  in.kv_c = mla::HostTensor(s.source, {tokens, kDc});
  in.k_pe = mla::HostTensor(s.source, {tokens, kDr});
  for (int64_t i = 0; i < in.kv_c.view().numel(); ++i) in.kv_c.set(i, normal(rng));
  for (int64_t i = 0; i < in.k_pe.view().numel(); ++i) in.k_pe.set(i, normal(rng));
  in.slots = mla::HostTensor(mla::DType::int64, {tokens});
  in.padding.assign(static_cast<size_t>(tokens), 0);
  int64_t* slot = in.slots.as<int64_t>();
  int64_t t = 0;
  auto pad = [&] {
    in.padding[static_cast<size_t>(t)] = 1;
    slot[t++] = -1;
  };
  pad();
  size_t next = 0;
  for (int64_t i = 0; i < p.batch; ++i) {
    int32_t* row = in.block_table.as<int32_t>() + i * p.max_blocks_per_seq;
    for (int64_t j = 0; j < s.lens[static_cast<size_t>(i)]; ++j) {
      if (j % kPage == 0) row[j / kPage] = physical[next++];
      slot[t++] = int64_t{row[j / kPage]} * kPage + j % kPage;
    }
  }
  pad();
  return in;
}

// kv_scale calibrated on the tokens written (amax / 448 or amax[c] / 127); undefined for formats
// that take none.
mla::HostTensor calibrate(const Inputs& in, mla::KvFormat format) {
  const std::vector<int64_t> shape = mla::kv_scale_shape(format, kDc, kDr);
  if (shape.empty()) return {};
  std::vector<float> amax(static_cast<size_t>(kDqk), 0.0f);
  for (int64_t t = 0; t < in.slots.view().numel(); ++t) {
    if (in.padding[static_cast<size_t>(t)]) continue;
    for (int64_t c = 0; c < kDqk; ++c) {
      const double v = c < kDc ? in.kv_c.get(t * kDc + c) : in.k_pe.get(t * kDr + c - kDc);
      amax[static_cast<size_t>(c)] = std::max(amax[static_cast<size_t>(c)], static_cast<float>(std::fabs(v)));
    }
  }
  mla::HostTensor scale(mla::DType::fp32, shape);
  const std::vector<float> values = mla::kv_scale_from_amax(format, amax);
  std::copy(values.begin(), values.end(), scale.as<float>());
  return scale;
}

mla::HostTensor empty_cache(const mla::Problem& p, mla::KvFormat format, unsigned char poison) {
  const mla::KvFormatTraits& kv = mla::kv_format_traits(format);
  mla::HostTensor cache(kv.element, {p.num_blocks, p.page_size, 1, kv.token_elements(kDc, kDr)});
  std::memset(cache.data(), poison, cache.bytes());
  return cache;
}

// "none", or where two caches first differ: the slot and the byte within its token.
std::string first_difference(const mla::HostTensor& a, const mla::HostTensor& b, mla::KvFormat format) {
  const auto* x = static_cast<const unsigned char*>(a.data());
  const auto* y = static_cast<const unsigned char*>(b.data());
  const size_t token = static_cast<size_t>(mla::kv_token_bytes(format, kDc, kDr));
  for (size_t i = 0; i < a.bytes(); ++i)
    if (x[i] != y[i])
      return "slot " + std::to_string(i / token) + " byte " + std::to_string(i % token) + ": gpu " +
             std::to_string(x[i]) + ", cpu " + std::to_string(y[i]);
  return "none";
}

// NaN (or an out-of-range int8 code) in every byte pattern a kernel must not read.
unsigned char poison_byte(mla::KvFormat format) { return format == mla::KvFormat::int8 ? 0x80 : 0xff; }

}  // namespace
#endif

TEST_CASE("cuda c_api: every KV format written by mla_write_kv and run on a stream matches the reference",
          "[cuda][c_api][kv]") {
#ifndef MLA_TESTS_HAVE_CUDA
  WARN("skipped: built without CUDA");
#else
  const std::string reason = why_no_cuda_c();
  if (!reason.empty()) {
    WARN("skipped: " + reason);
    return;
  }
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed << " (MLA_TEST_SEED=" << seed << " replays it)");
  std::mt19937_64 rng(seed);

  const std::string config = std::string(MLA_SOURCE_DIR) + "/configs/h200_sxm.json";
  DeviceHandle gpu(open_device(config.c_str(), nullptr));
  REQUIRE(std::string(mla_device_backend(gpu.get())) == "cuda");
  REQUIRE(mla_device_memory_space(gpu.get()) == MLA_MEMORY_DEVICE);
  DeviceHandle cpu(open_cpu_device_c());
  cudaDeviceProp prop{};
  cuda_ok(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");  // the config's device_index
  const bool sm90 = prop.major == 9 && prop.minor == 0;
  Stream stream;

  const std::vector<Shape> shapes = {
      {16, 1, false, mla::DType::bf16, mla::DType::bf16, {0, 77, 300, 1}},
      {128, 2, true, mla::DType::bf16, mla::DType::fp32, {2, 0, 191, 64}},
      {16, 2, true, mla::DType::fp16, mla::DType::bf16, {45, 0, 129}},
  };
  for (const Shape& shape : shapes) {
    Inputs in = make_inputs(shape, rng);
    const mla::KvFormat control = *mla::plain_kv_format(shape.dtype);
    INFO("h_q " << shape.h_q << ", s_q " << shape.s_q << (shape.causal ? " causal" : "") << ", q "
                << mla::dtype_name(shape.dtype) << ", source rows " << mla::dtype_name(shape.source));

    // The format-independent operands on the GPU, and the outputs.
    GpuTensor q(in.q), block_table(in.block_table), seqlens(in.seqlens), kv_c(in.kv_c), k_pe(in.k_pe), slots(in.slots);
    auto upload = [&](const GpuTensor& g, const mla::HostTensor& h) {
      copy(gpu.get(), g.buf.ptr, h.data(), h.bytes(), MLA_COPY_HOST_TO_DEVICE, stream.s);
    };
    upload(q, in.q);
    upload(block_table, in.block_table);
    upload(seqlens, in.seqlens);
    upload(kv_c, in.kv_c);
    upload(k_pe, in.k_pe);
    upload(slots, in.slots);
    const mla::Problem& p = in.problem;
    mla::HostTensor out(p.dtype, {p.batch, p.s_q, p.h_q, kDc}), lse(mla::DType::fp32, {p.batch, p.h_q, p.s_q});
    GpuTensor out_gpu(out), lse_gpu(lse);

    // The unquantized values (bf16), written on the cpu: the second reference of 8-bit formats.
    mla::HostTensor plain_cache = empty_cache(p, mla::KvFormat::bf16, 0xff);
    ok(write_kv(cpu.get(), mla::KvFormat::bf16, host(in.kv_c), host(in.k_pe), host(in.slots), host(plain_cache), {},
                nullptr),
       "mla_write_kv (cpu, bf16 values)");

    for (mla::KvFormat format : {control, mla::KvFormat::fp8_e4m3, mla::KvFormat::int8, mla::KvFormat::fp8_ds_mla}) {
      const char* name = mla::kv_format_name(format);
      INFO("format " << name);
      mla::Problem fp = p;
      fp.kv_format = format;
      const mla_problem problem = to_c(fp);

      char why[512] = {};
      const mla_supports_args yes = ask_supports(gpu.get(), problem, why, sizeof why);
      INFO("mla_device_supports: " << why);
      REQUIRE(yes.supported == 1);
      REQUIRE(yes.code == MLA_OK);

      // Cache and kv_scale: poisoned cache, then the tokens written on the GPU.
      const unsigned char poison = poison_byte(format);
      const mla::HostTensor scale = calibrate(in, format);
      mla::HostTensor cache = empty_cache(p, format, poison);
      GpuTensor cache_gpu(cache);
      std::unique_ptr<GpuTensor> scale_gpu;
      mla_tensor scale_view{};
      if (scale.defined()) {
        scale_gpu = std::make_unique<GpuTensor>(scale);
        upload(*scale_gpu, scale);
        scale_view = scale_gpu->view;
      }
      cuda_ok(cudaMemsetAsync(cache_gpu.buf.ptr, poison, cache_gpu.buf.bytes, stream.s), "poison kv_cache");
      cuda_ok(cudaMemsetAsync(out_gpu.buf.ptr, 0xff, out_gpu.buf.bytes, stream.s), "poison out");  // NaN
      cuda_ok(cudaMemsetAsync(lse_gpu.buf.ptr, 0xff, lse_gpu.buf.bytes, stream.s), "poison lse");  // NaN
      ok(write_kv(gpu.get(), format, kv_c.view, k_pe.view, slots.view, cache_gpu.view, scale_view, stream.s),
         "mla_write_kv (cuda)");

      PlanHandle plan = create_plan(gpu.get(), problem);
      const std::string kernel = mla_plan_kernel_name(plan.get());
      INFO("kernel " << kernel << ": " << mla_plan_explain(plan.get()));
      if (sm90) {
        CHECK(kernel == expected_sm90_kernel(format, shape.s_q * shape.h_q));
      } else {
        CHECK(kernel.rfind("cuda_portable", 0) == 0);
      }

      mla_tensors t{};
      t.struct_size = sizeof t;
      t.q = q.view;
      t.kv_cache = cache_gpu.view;
      t.kv_scale = scale_view;
      t.block_table = block_table.view;
      t.cache_seqlens = seqlens.view;
      t.out = out_gpu.view;
      t.lse = lse_gpu.view;
      ScheduleHandle schedule = create_schedule(plan.get(), seqlens.view, stream.s);
      mla_run_args run{};
      run.struct_size = sizeof run;
      run.plan = plan.get();
      run.schedule = schedule.get();
      run.tensors = &t;
      run.stream = stream.s;
      ok(mla_run(&run), "mla_run");

      mla::HostTensor written = empty_cache(p, format, 0);
      copy(gpu.get(), written.data(), cache_gpu.buf.ptr, written.bytes(), MLA_COPY_DEVICE_TO_HOST, stream.s);
      copy(gpu.get(), out.data(), out_gpu.buf.ptr, out.bytes(), MLA_COPY_DEVICE_TO_HOST, stream.s);
      copy(gpu.get(), lse.data(), lse_gpu.buf.ptr, lse.bytes(), MLA_COPY_DEVICE_TO_HOST, stream.s);
      ok(mla_device_synchronize(gpu.get(), stream.s), "mla_device_synchronize");

      // The cpu device writes the same tokens into the same poisoned cache: every byte equal.
      ok(write_kv(cpu.get(), format, host(in.kv_c), host(in.k_pe), host(in.slots), host(cache),
                  scale.defined() ? host(scale) : mla_tensor{}, nullptr),
         "mla_write_kv (cpu)");
      INFO("first differing byte: " << first_difference(written, cache, format));
      CHECK(std::memcmp(written.data(), cache.data(), cache.bytes()) == 0);

      // The float64 reference on the cpu, over the bytes the GPU wrote and read.
      PlanHandle cpu_plan = create_plan(cpu.get(), problem);
      mla_tensors h{};
      h.struct_size = sizeof h;
      h.q = host(in.q);
      h.kv_cache = host(written);
      if (scale.defined()) h.kv_scale = host(scale);
      h.block_table = host(in.block_table);
      h.cache_seqlens = host(in.seqlens);
      h.out = host(out);
      h.lse = host(lse);
      std::string summary;
      const mla_reference_check_args check = reference_check(cpu_plan.get(), h, &summary);
      INFO("vs the reference on the cache's values: " << summary);
      CHECK(check.passed == 1);

      if (mla::is_quantized(format)) {
        mla::Problem bf = p;
        bf.kv_format = mla::KvFormat::bf16;
        PlanHandle plain_plan = create_plan(cpu.get(), to_c(bf));
        h.kv_cache = host(plain_cache);
        h.kv_scale = mla_tensor{};
        const mla_reference_check_args q_check = reference_check(plain_plan.get(), h, &summary);
        const mla::Tolerance tol = mla::quantization_tolerance(fp);
        INFO("vs the reference on the unquantized values: rel_l2 "
             << q_check.rel_l2_error << " (<= " << tol.rel_l2 << "), max_abs " << q_check.max_abs_error << " (<= "
             << tol.max_abs << "), lse " << q_check.lse_max_abs_error << " (<= " << tol.lse_abs
             << "), nonfinite mismatches " << q_check.nonfinite_mismatches);
        CHECK(q_check.nonfinite_mismatches == 0);
        CHECK(q_check.rel_l2_error <= tol.rel_l2);
        CHECK(q_check.max_abs_error <= tol.max_abs);
        CHECK(q_check.lse_max_abs_error <= tol.lse_abs);
      }
    }
  }
#endif
}
