/* custom_runtime: what an inference runtime written in C does with the MLA decode operator.
 *
 * DeepSeek-V3 attention shape (61 layers, 128 query heads, one latent KV head, d_c = 512,
 * d_r = 64, 64-token pages), a small batch decoding a few tokens: per step the runtime
 * writes each sequence's new token into every layer's paged cache with mla_write_kv (its
 * latent and rope parts and the slot it goes to), makes one schedule for the step's lengths,
 * and runs the operator once per layer. All device memory comes from the API,
 * and every input goes through mla_device_copy, so the same code drives host and device
 * backends. At the last step one layer's output is checked against the float64 reference.
 *
 * usage: custom_runtime [config.json [steps [tokens]]]
 *   config  a device config (default: the installed cpu config, or the built-in default)
 *   steps   decode steps (default 3)
 *   tokens  cache length of the first sequence before the first step (default 256)
 * Exit status: 0 on success, 1 on any error or mismatch, 77 when the config's backend is not
 * available on this machine (nothing to run; test drivers report it as skipped).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mla/mla.h>

#define LAYERS 61
#define BATCH 2
#define H_Q 128
#define D_C 512
#define D_R 64
#define D_QK (D_C + D_R)
#define PAGE 64
#define CHECKED_LAYER 30
#define UNUSED_BLOCK_ID 2147480000 /* what unused block-table entries hold: never dereferenced */
#define EXIT_SKIPPED 77

/* ---- Small helpers ----------------------------------------------------------------------- */

/* Prints a failed call's status and frees it; returns 1 when there was one. */
static int failed(mla_status* status, const char* what) {
  if (!status) return 0;
  fprintf(stderr, "custom_runtime: %s failed [%s, backend \"%s\"]: %s\n", what,
          mla_status_code_name(mla_status_get_code(status)), mla_status_backend(status), mla_status_message(status));
  mla_status_free(status);
  return 1;
}

/* float -> bf16, rounding to nearest even (finite inputs only). */
static uint16_t bf16_from_float(float value) {
  uint32_t bits;
  memcpy(&bits, &value, sizeof bits);
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  return (uint16_t)(bits >> 16);
}

static const uint16_t BF16_NAN = 0x7FC0u;

/* A deterministic stream of values in [-1, 1): inputs differ per layer, step and element. */
static float random_unit(uint64_t* state) {
  *state = *state * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((*state >> 40) & 0xFFFFFFu) / 8388608.0f - 1.0f;
}

static void fill_random_bf16(uint16_t* dst, size_t count, uint64_t seed) {
  size_t i;
  for (i = 0; i < count; ++i) dst[i] = bf16_from_float(random_unit(&seed));
}

/* ---- The runtime's state ----------------------------------------------------------------- */

typedef struct runtime {
  mla_device* device;
  mla_plan* plan;
  int32_t space;           /* where the device's tensors live */
  int64_t max_blocks;      /* columns of the block table */
  int64_t num_blocks;      /* physical KV blocks per layer */
  int32_t seqlens[BATCH];  /* host copy of the lengths */
  int32_t* block_table;    /* host copy [BATCH, max_blocks] */
  uint16_t* kv_host;       /* host copy of the checked layer's cache (the reference reads it) */
  uint16_t* q_host;        /* host staging for one layer's query [BATCH, 1, H_Q, D_QK] */
  void* kv[LAYERS];        /* device: one paged cache per layer */
  void* q;                 /* device: the current layer's query */
  void* block_table_dev;
  void* seqlens_dev;
  void* new_kv_c;          /* device: the step's new tokens, latent part [BATCH, D_C] bf16 */
  void* new_k_pe;          /* device: their rope part [BATCH, D_R] bf16 */
  void* slots_dev;         /* device: int64 [BATCH], the cache slot of each new token */
  void* out;               /* device: [BATCH, 1, H_Q, D_C] bf16 */
  void* lse;               /* device: [BATCH, H_Q, 1] fp32 */
} runtime;

static size_t kv_bytes(const runtime* rt) { return (size_t)rt->num_blocks * PAGE * D_QK * sizeof(uint16_t); }
static size_t q_bytes(void) { return (size_t)BATCH * H_Q * D_QK * sizeof(uint16_t); }
static size_t out_bytes(void) { return (size_t)BATCH * H_Q * D_C * sizeof(uint16_t); }
static size_t lse_bytes(void) { return (size_t)BATCH * H_Q * sizeof(float); }

static mla_status* allocate(runtime* rt, size_t bytes, void** ptr) {
  mla_allocate_args args;
  mla_status* status;
  memset(&args, 0, sizeof args);
  args.struct_size = sizeof args;
  args.device = rt->device;
  args.bytes = bytes;
  status = mla_device_allocate(&args);
  *ptr = args.ptr;
  return status;
}

static mla_status* copy(runtime* rt, void* dst, const void* src, size_t bytes, mla_copy_kind kind) {
  mla_copy_args args;
  memset(&args, 0, sizeof args);
  args.struct_size = sizeof args;
  args.device = rt->device;
  args.dst = dst;
  args.src = src;
  args.bytes = bytes;
  args.kind = kind;
  return mla_device_copy(&args);
}

/* Physical block of sequence i's logical page j: interleaved, so pages are not contiguous. */
static int32_t physical_block(int64_t i, int64_t j) { return (int32_t)(j * BATCH + i); }

/* The KV row of (layer, token position) of sequence i: random, reproducible. */
static void make_kv_row(uint16_t* row, int layer, int64_t i, int64_t position) {
  fill_random_bf16(row, D_QK, 0x9E3779B97F4A7C15ull ^ ((uint64_t)layer << 40) ^ ((uint64_t)i << 32) ^ (uint64_t)position);
}

static uint16_t* kv_row(uint16_t* cache, int64_t i, int64_t position) {
  return cache + ((int64_t)physical_block(i, position / PAGE) * PAGE + position % PAGE) * D_QK;
}

/* Fills every layer's cache: valid rows random, every other row NaN to prove that the
 * backend reads only tokens below each length. Builds each layer in kv_host and copies it;
 * the checked layer goes last so that kv_host keeps its host copy for the reference. */
static int fill_caches(runtime* rt) {
  int n;
  for (n = 1; n <= LAYERS; ++n) {
    const int layer = (CHECKED_LAYER + n) % LAYERS;
    int64_t i, k, position;
    for (k = 0; k < rt->num_blocks * PAGE * D_QK; ++k) rt->kv_host[k] = BF16_NAN;
    for (i = 0; i < BATCH; ++i)
      for (position = 0; position < rt->seqlens[i]; ++position) make_kv_row(kv_row(rt->kv_host, i, position), layer, i, position);
    if (failed(copy(rt, rt->kv[layer], rt->kv_host, kv_bytes(rt), MLA_COPY_HOST_TO_DEVICE), "copying a KV cache"))
      return 1;
  }
  return 0;
}

/* A decode step produced one token per sequence: mla_write_kv puts it into every layer's
 * cache at slot block * PAGE + offset (what vLLM calls concat_and_cache_mla). The cache is bf16
 * here; a quantized cache takes the same call with its kv_format and kv_scale. */
static int append_token(runtime* rt, int check_layer_host) {
  int layer;
  int64_t i;
  uint16_t rows[BATCH][D_QK], kv_c[BATCH][D_C], k_pe[BATCH][D_R];
  int64_t slots[BATCH];
  const int64_t kv_c_shape[2] = {BATCH, D_C}, k_pe_shape[2] = {BATCH, D_R}, slot_shape[1] = {BATCH};
  const int64_t kv_shape[4] = {rt->num_blocks, PAGE, 1, D_QK};
  for (i = 0; i < BATCH; ++i) {
    const int64_t position = rt->seqlens[i];
    slots[i] = (int64_t)physical_block(i, position / PAGE) * PAGE + position % PAGE;
  }
  if (failed(copy(rt, rt->slots_dev, slots, sizeof slots, MLA_COPY_HOST_TO_DEVICE), "copying the slots")) return 1;
  for (layer = 0; layer < LAYERS; ++layer) {
    mla_write_kv_args write;
    for (i = 0; i < BATCH; ++i) {
      make_kv_row(rows[i], layer, i, rt->seqlens[i]);
      memcpy(kv_c[i], rows[i], sizeof kv_c[i]);
      memcpy(k_pe[i], rows[i] + D_C, sizeof k_pe[i]);
      if (layer == check_layer_host) memcpy(kv_row(rt->kv_host, i, rt->seqlens[i]), rows[i], sizeof rows[i]);
    }
    if (failed(copy(rt, rt->new_kv_c, kv_c, sizeof kv_c, MLA_COPY_HOST_TO_DEVICE), "copying kv_c") ||
        failed(copy(rt, rt->new_k_pe, k_pe, sizeof k_pe, MLA_COPY_HOST_TO_DEVICE), "copying k_pe"))
      return 1;
    memset(&write, 0, sizeof write);
    write.struct_size = sizeof write;
    write.device = rt->device;
    write.kv_format = MLA_KV_FORMAT_BF16;
    write.kv_c = mla_tensor_contiguous(rt->new_kv_c, MLA_DTYPE_BF16, 2, kv_c_shape, rt->space);
    write.k_pe = mla_tensor_contiguous(rt->new_k_pe, MLA_DTYPE_BF16, 2, k_pe_shape, rt->space);
    write.slot_mapping = mla_tensor_contiguous(rt->slots_dev, MLA_DTYPE_INT64, 1, slot_shape, rt->space);
    write.kv_cache = mla_tensor_contiguous(rt->kv[layer], MLA_DTYPE_BF16, 4, kv_shape, rt->space);
    if (failed(mla_write_kv(&write), "mla_write_kv")) return 1;
  }
  for (i = 0; i < BATCH; ++i) rt->seqlens[i] += 1;
  return 0;
}

static void make_query(runtime* rt, int step, int layer) {
  fill_random_bf16(rt->q_host, (size_t)BATCH * H_Q * D_QK, ((uint64_t)step << 32) ^ (uint64_t)(layer + 1) * 0x2545F4914F6CDD1Dull);
}

/* The operands of one layer, as views of the device buffers (or of host copies). */
static mla_tensors layer_tensors(const runtime* rt, void* q, void* kv, void* block_table, void* seqlens, void* out,
                                 void* lse, int32_t space) {
  const int64_t q_shape[4] = {BATCH, 1, H_Q, D_QK};
  const int64_t kv_shape[4] = {rt->num_blocks, PAGE, 1, D_QK};
  const int64_t table_shape[2] = {BATCH, rt->max_blocks};
  const int64_t lens_shape[1] = {BATCH};
  const int64_t out_shape[4] = {BATCH, 1, H_Q, D_C};
  const int64_t lse_shape[3] = {BATCH, H_Q, 1};
  mla_tensors t;
  memset(&t, 0, sizeof t);
  t.struct_size = sizeof t;
  t.q = mla_tensor_contiguous(q, MLA_DTYPE_BF16, 4, q_shape, space);
  t.kv_cache = mla_tensor_contiguous(kv, MLA_DTYPE_BF16, 4, kv_shape, space);
  t.block_table = mla_tensor_contiguous(block_table, MLA_DTYPE_INT32, 2, table_shape, space);
  t.cache_seqlens = mla_tensor_contiguous(seqlens, MLA_DTYPE_INT32, 1, lens_shape, space);
  t.out = mla_tensor_contiguous(out, MLA_DTYPE_BF16, 4, out_shape, space);
  t.lse = mla_tensor_contiguous(lse, MLA_DTYPE_FP32, 3, lse_shape, space);
  return t;
}

/* ---- Setup and teardown ------------------------------------------------------------------ */

static int open_runtime(runtime* rt, const char* config_path, int64_t first_len, int steps) {
  mla_device_open_args open_args;
  mla_plan_create_args plan_args;
  mla_problem problem;
  mla_status* status;
  int64_t i, j;
  int layer;

  memset(&open_args, 0, sizeof open_args);
  open_args.struct_size = sizeof open_args;
  open_args.config_path = config_path; /* NULL: the library's built-in default (cpu) */
  status = mla_device_open(&open_args);
  if (status && mla_status_get_code(status) == MLA_ERROR_BACKEND_UNAVAILABLE) {
    printf("custom_runtime: skipped: %s\n", mla_status_message(status));
    mla_status_free(status);
    return EXIT_SKIPPED;
  }
  if (failed(status, "mla_device_open")) return 1;
  rt->device = open_args.device;
  rt->space = mla_device_memory_space(rt->device);
  printf("device: %s (backend %s, %s memory)\n", mla_device_name(rt->device), mla_device_backend(rt->device),
         rt->space == MLA_MEMORY_HOST ? "host" : "device");

  /* Lengths: the second sequence shorter and not page aligned; room for `steps` more tokens. */
  rt->seqlens[0] = (int32_t)first_len;
  rt->seqlens[1] = (int32_t)(first_len * 3 / 4 + 1);
  rt->max_blocks = (first_len + steps + PAGE - 1) / PAGE + 1; /* +1: a poisoned spare column */
  rt->num_blocks = rt->max_blocks * BATCH;

  mla_problem_init(&problem); /* DeepSeek-V3 defaults: h_q 128, d_c 512, d_r 64, page 64, bf16 */
  problem.batch = BATCH;
  problem.num_blocks = rt->num_blocks;
  problem.max_blocks_per_seq = rt->max_blocks;
  memset(&plan_args, 0, sizeof plan_args);
  plan_args.struct_size = sizeof plan_args;
  plan_args.device = rt->device;
  plan_args.problem = &problem;
  if (failed(mla_plan_create(&plan_args), "mla_plan_create")) return 1;
  rt->plan = plan_args.plan;
  printf("plan: kernel %s, workspace %lu bytes\n  %s\n", mla_plan_kernel_name(rt->plan),
         (unsigned long)mla_plan_workspace_bytes(rt->plan), mla_plan_explain(rt->plan));

  rt->block_table = (int32_t*)malloc((size_t)(BATCH * rt->max_blocks) * sizeof(int32_t));
  rt->kv_host = (uint16_t*)malloc(kv_bytes(rt));
  rt->q_host = (uint16_t*)malloc(q_bytes());
  if (!rt->block_table || !rt->kv_host || !rt->q_host) {
    fprintf(stderr, "custom_runtime: out of host memory\n");
    return 1;
  }
  /* Columns past the last page a sequence will reach hold junk ids, as a runtime's may. */
  for (i = 0; i < BATCH; ++i) {
    const int64_t pages = (rt->seqlens[i] + steps + PAGE - 1) / PAGE;
    for (j = 0; j < rt->max_blocks; ++j)
      rt->block_table[i * rt->max_blocks + j] = j < pages ? physical_block(i, j) : UNUSED_BLOCK_ID;
  }

  for (layer = 0; layer < LAYERS; ++layer)
    if (failed(allocate(rt, kv_bytes(rt), &rt->kv[layer]), "allocating a KV cache")) return 1;
  if (failed(allocate(rt, q_bytes(), &rt->q), "allocating q") ||
      failed(allocate(rt, (size_t)(BATCH * rt->max_blocks) * sizeof(int32_t), &rt->block_table_dev), "allocating the block table") ||
      failed(allocate(rt, sizeof rt->seqlens, &rt->seqlens_dev), "allocating the lengths") ||
      failed(allocate(rt, (size_t)BATCH * D_C * sizeof(uint16_t), &rt->new_kv_c), "allocating kv_c") ||
      failed(allocate(rt, (size_t)BATCH * D_R * sizeof(uint16_t), &rt->new_k_pe), "allocating k_pe") ||
      failed(allocate(rt, (size_t)BATCH * sizeof(int64_t), &rt->slots_dev), "allocating the slots") ||
      failed(allocate(rt, out_bytes(), &rt->out), "allocating out") ||
      failed(allocate(rt, lse_bytes(), &rt->lse), "allocating lse"))
    return 1;
  if (failed(copy(rt, rt->block_table_dev, rt->block_table, (size_t)(BATCH * rt->max_blocks) * sizeof(int32_t),
                  MLA_COPY_HOST_TO_DEVICE), "copying the block table"))
    return 1;
  return fill_caches(rt);
}

static void close_runtime(runtime* rt) {
  int layer;
  /* Memory goes back to its device before the device handle is released. */
  for (layer = 0; layer < LAYERS; ++layer) mla_device_deallocate(rt->device, rt->kv[layer]);
  mla_device_deallocate(rt->device, rt->q);
  mla_device_deallocate(rt->device, rt->block_table_dev);
  mla_device_deallocate(rt->device, rt->seqlens_dev);
  mla_device_deallocate(rt->device, rt->new_kv_c);
  mla_device_deallocate(rt->device, rt->new_k_pe);
  mla_device_deallocate(rt->device, rt->slots_dev);
  mla_device_deallocate(rt->device, rt->out);
  mla_device_deallocate(rt->device, rt->lse);
  mla_plan_free(rt->plan);
  mla_device_free(rt->device);
  free(rt->block_table);
  free(rt->kv_host);
  free(rt->q_host);
}

/* ---- Checking ---------------------------------------------------------------------------- */

/* Copies the layer's result back and compares it with the float64 reference on host copies. */
static int check_layer(runtime* rt) {
  mla_reference_check_args check;
  char summary[512];
  uint16_t* out_host = (uint16_t*)malloc(out_bytes());
  float* lse_host = (float*)malloc(lse_bytes());
  mla_tensors host;
  int result = 1;
  if (!out_host || !lse_host) goto done;
  if (failed(copy(rt, out_host, rt->out, out_bytes(), MLA_COPY_DEVICE_TO_HOST), "copying out back") ||
      failed(copy(rt, lse_host, rt->lse, lse_bytes(), MLA_COPY_DEVICE_TO_HOST), "copying lse back") ||
      failed(mla_device_synchronize(rt->device, NULL), "mla_device_synchronize"))
    goto done;
  host = layer_tensors(rt, rt->q_host, rt->kv_host, rt->block_table, rt->seqlens, out_host, lse_host, MLA_MEMORY_HOST);

  memset(&check, 0, sizeof check);
  check.struct_size = sizeof check;
  check.plan = rt->plan;
  check.tensors = &host;
  check.summary = summary;
  check.summary_capacity = sizeof summary;
  if (failed(mla_reference_check(&check), "mla_reference_check")) goto done;
  printf("layer %d vs float64 reference: %s\n  %s\n", CHECKED_LAYER, check.passed ? "PASS" : "MISMATCH", summary);
  result = check.passed ? 0 : 1;
done:
  if (!out_host || !lse_host) fprintf(stderr, "custom_runtime: out of host memory\n");
  free(out_host);
  free(lse_host);
  return result;
}

/* ---- The decode loop --------------------------------------------------------------------- */

static int decode(runtime* rt, int steps) {
  int step, layer;
  for (step = 0; step < steps; ++step) {
    const int last = step + 1 == steps;
    mla_schedule_create_args schedule_args;
    mla_tensors tensors;
    double simulated_seconds = 0;

    if (append_token(rt, CHECKED_LAYER)) return 1;
    if (failed(copy(rt, rt->seqlens_dev, rt->seqlens, sizeof rt->seqlens, MLA_COPY_HOST_TO_DEVICE), "copying the lengths"))
      return 1;
    tensors = layer_tensors(rt, rt->q, NULL, rt->block_table_dev, rt->seqlens_dev, rt->out, rt->lse, rt->space);

    /* One schedule per step, shared by all 61 layers: the lengths are the same for each. */
    memset(&schedule_args, 0, sizeof schedule_args);
    schedule_args.struct_size = sizeof schedule_args;
    schedule_args.plan = rt->plan;
    schedule_args.cache_seqlens = tensors.cache_seqlens;
    if (failed(mla_schedule_create(&schedule_args), "mla_schedule_create")) return 1;

    for (layer = 0; layer < LAYERS; ++layer) {
      mla_run_args run;
      make_query(rt, step, layer);
      if (failed(copy(rt, rt->q, rt->q_host, q_bytes(), MLA_COPY_HOST_TO_DEVICE), "copying q")) break;
      tensors.kv_cache.data = rt->kv[layer];

      memset(&run, 0, sizeof run);
      run.struct_size = sizeof run;
      run.plan = rt->plan;
      run.schedule = schedule_args.schedule;
      run.tensors = &tensors;
      if (failed(mla_run(&run), "mla_run")) break;
      if (run.simulated) simulated_seconds += run.seconds;
      /* A real runtime hands out to the output projection here; the example checks one layer. */
      if (last && layer == CHECKED_LAYER && check_layer(rt)) break;
    }
    mla_schedule_free(schedule_args.schedule);
    if (layer < LAYERS) return 1;
    printf("step %d: lengths %d, %d; %d layers run", step, rt->seqlens[0], rt->seqlens[1], LAYERS);
    if (simulated_seconds > 0) printf(" (simulated %.1f us)", simulated_seconds * 1e6);
    printf("\n");
  }
  return failed(mla_device_synchronize(rt->device, NULL), "mla_device_synchronize");
}

int main(int argc, char** argv) {
  runtime rt;
  const char* config = argc > 1 ? argv[1] : NULL;
  const int steps = argc > 2 ? atoi(argv[2]) : 3;
  const long tokens = argc > 3 ? atol(argv[3]) : 256;
  int status;

#ifdef MLA_DEFAULT_CONFIG
  if (!config) config = MLA_DEFAULT_CONFIG; /* the installed configs/cpu.json */
#endif
  if (mla_version() < MLA_VERSION) {
    fprintf(stderr, "custom_runtime: libmla %s is older than the header (%d)\n", mla_version_string(), MLA_VERSION);
    return 1;
  }
  if (steps < 1 || tokens < 1 || tokens > 1000000) {
    fprintf(stderr, "usage: %s [config.json [steps >= 1 [tokens >= 1]]]\n", argv[0]);
    return 1;
  }
  printf("libmla %s, config %s\n", mla_version_string(), config ? config : "(built-in default)");

  memset(&rt, 0, sizeof rt);
  status = open_runtime(&rt, config, tokens, steps);
  if (status == 0) status = decode(&rt, steps);
  close_runtime(&rt);
  if (status == 0) printf("custom_runtime: OK\n");
  return status;
}
