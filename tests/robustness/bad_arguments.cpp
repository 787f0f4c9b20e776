// Bad operator arguments: each row starts from a valid cpu setup (ApiSetup) and breaks one
// thing, then goes through the public API (plan / schedule / run) as an embedding runtime would.
#include <catch2/catch.hpp>

#include <cmath>

#include "robustness/robustness_table.hpp"

namespace mla::robustness {

namespace {
const std::string kRun = " --json out.json --output out.safetensors";
const std::vector<std::string> kOutputs = {"out.json", "out.safetensors"};
}  // namespace

void add_argument_rows(Table& t) {
  using E = ErrorCode;
  auto run_with = [](auto&& change) {
    return [change] {
      ApiSetup s = ApiSetup::make();
      change(s);
      s.run();
    };
  };

  // Shapes and dtypes.
  t.api("arguments", "q with the wrong head count", "q.shape[2] = 8; plan->run(...)", E::invalid_argument,
        "q: expected bf16 [2, 1, 16, 576], got bf16 [2, 1, 8, 576]", run_with([](ApiSetup& s) { s.args.q.shape[2] = 8; }));
  t.api("arguments", "q of rank 3", "q.rank = 3; plan->run(...)", E::invalid_argument, "q: expected bf16 [2, 1, 16, 576]",
        run_with([](ApiSetup& s) { s.args.q.rank = 3; }));
  t.api("arguments", "q in fp16 for a bf16 problem", "q.dtype = fp16; plan->run(...)", E::invalid_argument,
        "q: expected bf16 [2, 1, 16, 576], got fp16", run_with([](ApiSetup& s) { s.args.q.dtype = DType::fp16; }));
  t.api("arguments", "kv_cache with the wrong page size", "kv_cache.shape[1] = 8; plan->run(...)", E::invalid_argument,
        "kv_cache: expected bf16", run_with([](ApiSetup& s) { s.args.kv_cache.shape[1] = 8; }));
  t.api("arguments", "lse in bf16 instead of fp32", "lse.dtype = bf16; plan->run(...)", E::invalid_argument,
        "lse: expected fp32 [2, 16, 1]", run_with([](ApiSetup& s) { s.args.lse.dtype = DType::bf16; }));
  t.api("arguments", "block_table in int64", "block_table.dtype = int64; plan->run(...)", E::invalid_argument,
        "block_table: expected int32", run_with([](ApiSetup& s) { s.args.block_table.dtype = DType::int64; }));
  t.api("arguments", "a tensor the variant does not use (q_nope for latent)", "q_nope = q; plan->run(...)",
        E::invalid_argument, "q_nope: not used by the latent variant",
        run_with([](ApiSetup& s) { s.args.q_nope = s.args.q; }));

  // Strides.
  t.api("arguments", "last dimension not contiguous", "q.strides[3] = 2; plan->run(...)", E::invalid_argument,
        "q: the last dimension must be contiguous (stride 1), got stride 2",
        run_with([](ApiSetup& s) { s.args.q.strides[3] = 2; }));
  t.api("arguments", "rows that overlap", "kv_cache.strides[1] = 100; plan->run(...)", E::invalid_argument,
        "kv_cache: stride 100 of dimension 1 overlaps the dimension inside it",
        run_with([](ApiSetup& s) { s.args.kv_cache.strides[1] = 100; }));
  t.api("arguments", "negative stride", "out.strides[0] = -1; plan->run(...)", E::invalid_argument,
        "out: negative stride -1 in dimension 0", run_with([](ApiSetup& s) { s.args.out.strides[0] = -1; }));

  // Pointers and memory spaces.
  t.api("arguments", "null q pointer", "q.data = nullptr; plan->run(...)", E::invalid_argument,
        "q: data pointer is null", run_with([](ApiSetup& s) { s.args.q.data = nullptr; }));
  t.api("arguments", "null out pointer", "out.data = nullptr; plan->run(...)", E::invalid_argument,
        "out: data pointer is null", run_with([](ApiSetup& s) { s.args.out.data = nullptr; }));
  t.api("arguments", "misaligned pointer (1 byte off)", "kv_cache.data += 1 byte; plan->run(...)", E::invalid_argument,
        "kv_cache: data pointer is not aligned to its element size (2 bytes)",
        run_with([](ApiSetup& s) { s.args.kv_cache.data = static_cast<char*>(s.args.kv_cache.data) + 1; }));
  t.api("arguments", "one tensor tagged as device memory on a host backend", "q.space = device; plan->run(...)",
        E::invalid_argument, "q: expected host memory, got device memory",
        run_with([](ApiSetup& s) { s.args.q.space = MemorySpace::device; }));

  t.api("arguments", "every tensor tagged as device memory on a host backend", "all views .space = device; plan->run(...)",
        E::invalid_argument, "q: expected host memory, got device memory", run_with([](ApiSetup& s) {
          for (TensorView* v : {&s.args.q, &s.args.kv_cache, &s.args.block_table, &s.args.cache_seqlens, &s.args.out,
                                &s.args.lse})
            v->space = MemorySpace::device;
        }));

  // The problem itself.
  t.api("arguments", "h_q not a multiple of h_kv", "problem.h_q = 16, h_kv = 3; device->plan(problem)",
        E::invalid_argument, "problem.h_q: expected a multiple of h_kv = 3, got 16", [] {
          ApiSetup s = ApiSetup::make();
          Problem p = s.in.problem;
          p.h_kv = 3;
          (void)s.device->plan(p);
        });
  t.api("arguments", "batch 0", "problem.batch = 0; device->plan(problem)", E::invalid_argument,
        "problem.batch: expected 1 <= value <= 1048576, got 0", [] {
          ApiSetup s = ApiSetup::make();
          Problem p = s.in.problem;
          p.batch = 0;
          (void)s.device->plan(p);
        });
  t.api("arguments", "NaN softmax scale", "problem.softmax_scale = NaN; device->plan(problem)", E::invalid_argument,
        "problem.softmax_scale: expected a finite value", [] {
          ApiSetup s = ApiSetup::make();
          Problem p = s.in.problem;
          p.softmax_scale = std::nanf("");
          (void)s.device->plan(p);
        });
  t.api("arguments", "KV format outside the enum", "problem.kv_format = KvFormat(9); device->plan(problem)",
        E::invalid_argument, "kv format: unknown value 9 (expected one of bf16, fp16, fp32, fp8_e4m3, fp8_ds_mla, int8)", [] {
          ApiSetup s = ApiSetup::make();
          Problem p = s.in.problem;
          p.kv_format = static_cast<KvFormat>(9);
          (void)s.device->plan(p);
        });
  t.api("arguments", "fp8_ds_mla with a latent width not a multiple of 128",
        "problem.kv_format = fp8_ds_mla, d_c = 320; device->plan(problem)", E::invalid_argument,
        "problem.d_c: the fp8_ds_mla KV format needs d_c a multiple of 128", [] {
          ApiSetup s = ApiSetup::make();
          Problem p = s.in.problem;
          p.kv_format = KvFormat::fp8_ds_mla;
          p.d_c = 320;
          (void)s.device->plan(p);
        });

  // Lengths and block ids.
  t.api("arguments", "negative sequence length", "cache_seqlens[1] = -1; plan->schedule(...)", E::invalid_argument,
        "cache_seqlens[1]: expected 0 <= length <=", [] {
          ApiSetup s = ApiSetup::make();
          s.in.cache_seqlens.as<int32_t>()[1] = -1;
          (void)s.plan->schedule(s.args.cache_seqlens);
        });
  t.api("arguments", "length beyond the block table's capacity", "cache_seqlens[0] = capacity + 1; plan->schedule(...)",
        E::invalid_argument, "(max_blocks_per_seq * page_size), got", [] {
          ApiSetup s = ApiSetup::make();
          const Problem& p = s.in.problem;
          s.in.cache_seqlens.as<int32_t>()[0] = static_cast<int32_t>(p.max_blocks_per_seq * p.page_size + 1);
          (void)s.plan->schedule(s.args.cache_seqlens);
        });
  t.api("arguments", "lengths changed after schedule()", "cache_seqlens[0] -= 1; plan->run(...) with the old schedule",
        E::invalid_argument, "schedule: made for other cache_seqlens", run_with([](ApiSetup& s) {
          s.in.cache_seqlens.as<int32_t>()[0] -= 1;
        }));
  t.api("arguments", "block id out of range (== num_blocks), validate mode",
        "block_table[0][0] = num_blocks; plan->run(..., {.validate_indices = true})", E::invalid_argument,
        "block_table[0][0]: expected a block id in [0, ", [] {
          ApiSetup s = ApiSetup::make();
          s.in.block_table.as<int32_t>()[0] = static_cast<int32_t>(s.in.problem.num_blocks);
          s.run(RunOptions{true});
        });
  t.api("arguments", "negative block id, validate mode", "block_table[1][2] = -7; plan->run(..., validate)",
        E::invalid_argument, "block_table[1][2]: expected a block id in [0, ", [] {
          ApiSetup s = ApiSetup::make();
          s.in.block_table.as<int32_t>()[s.in.problem.max_blocks_per_seq + 2] = -7;
          s.run(RunOptions{true});
        });
  t.api("arguments", "poison-like block id 2147480000, validate mode", "block_table[0][1] = 2147480000; run(validate)",
        E::invalid_argument, "got 2147480000", [] {
          ApiSetup s = ApiSetup::make();
          s.in.block_table.as<int32_t>()[1] = 2147480000;
          s.run(RunOptions{true});
        });

  // The operator contract (docs/api.md) defines queries with nothing to attend to as valid (out = 0, lse = +inf); with
  // causal and s_q > length the first s_q - length query tokens are such queries.
  t.accepted("arguments", "s_q = 4 greater than the length 2, causal", "plan->run(...) with s_q=4, causal, length 2",
             "valid by the operator contract (docs/api.md): the 2 fully masked query tokens give out = 0 and lse = +inf (checked)", [] {
               ApiSetup s = ApiSetup::make(4, true, 2);
               s.run();
               const Problem& p = s.in.problem;
               for (int64_t i = 0; i < p.batch; ++i)
                 for (int64_t tok = 0; tok < p.s_q; ++tok)
                   for (int64_t h = 0; h < p.h_q; ++h) {
                     const float lse = s.in.lse.as<float>()[(i * p.h_q + h) * p.s_q + tok];
                     const bool masked = visible_keys(p, 2, tok) == 0;
                     REQUIRE(masked == (tok < 2));
                     REQUIRE((masked ? (std::isinf(lse) && lse > 0) : std::isfinite(lse)));
                     if (masked)
                       for (int64_t d = 0; d < p.d_v(); ++d)
                         REQUIRE(s.in.out.get(((i * p.s_q + tok) * p.h_q + h) * p.d_v() + d) == 0.0);
                   }
             });

  // The same rules from the command line.
  t.cli("arguments", "h_q not a multiple of h_kv (CLI)", "run --heads 7 --kv-heads 2" + kRun, 2,
        "problem.h_q: expected a multiple of h_kv = 2, got 7", kOutputs);
  t.cli("arguments", "batch 0 (CLI)", "run --batch 0" + kRun, 2, "--batch: Value 0 not in range", kOutputs);
  t.cli("arguments", "negative length (CLI)", "run --seqlen -5" + kRun, 2, "--seqlen", kOutputs);
  t.cli("arguments", "unsupported dtype (CLI)", "run --dtype int8" + kRun, 2, "--dtype: int8 not in", kOutputs);
  t.cli("arguments", "unknown KV format (CLI)", "run --kv-format fp4" + kRun, 2,
        "--kv-format: unknown KV format \"fp4\" (expected one of bf16, fp16, fp32, fp8_e4m3, fp8_ds_mla, int8)", kOutputs);
  t.cli("arguments", "infinite softmax scale (CLI)", "run --softmax-scale inf --batch 1 --heads 16 --seqlen 8" + kRun,
        2, "problem.softmax_scale: expected a finite value", kOutputs);
}

}  // namespace mla::robustness
