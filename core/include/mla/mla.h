/* The C ABI of the MLA decode operator: what a runtime written in C, Rust, Python (ctypes,
 * cffi) or C++ with its own ABI rules links against. A thin layer over the C++ API
 * (mla/mla.hpp); both run the same code. docs/embedding.md walks through a full program.
 *
 * Rules that hold for every function below (read once, relied on everywhere):
 *
 * - Errors. A function that can fail returns `mla_status*`: NULL means success; otherwise a
 *   status object carrying a code, a message and the backend involved. The caller owns it
 *   and frees it with mla_status_free(). Nothing here aborts the process or lets a C++
 *   exception escape. Accessors of a valid handle cannot fail and return their value.
 * - Argument structs. Calls that may grow take one struct whose first field,
 *   `struct_size`, the caller sets to sizeof(the struct) as its header declares it. Fields
 *   are only ever appended, so a program built against an older header keeps working with a
 *   newer library; the library reads a field only when struct_size says it is there and uses
 *   its default otherwise. Fields marked "out" are written by the call. Zero-initialise an
 *   args struct (`= {0}` / memset) before filling it, or use the *_init helper where there is one.
 * - Strings the library returns (`const char*`) belong to the object they come from and stay
 *   valid until that object is freed; the caller never frees them.
 * - Handles. A plan keeps its device alive and a schedule keeps its plan alive, so handles
 *   may be freed in any order. Memory from mla_device_allocate must be released with
 *   mla_device_deallocate before the device handle is freed.
 * - Threads. A device and a plan may be used from several threads at once (a plan is
 *   immutable once made). A schedule owns its step's workspace: one run at a time per
 *   schedule; give each thread its own. Status objects and backend lists are plain data.
 * - Blocking. Each function says whether it waits. "Host backends" (cpu, sim_tpu) finish all
 *   work before returning; "device backends" (cuda) order work on the given stream.
 * - Versioning. Within one major version the ABI only grows: no function, enum value or
 *   struct field is removed, renamed or changes meaning. Check at startup that
 *   mla_version() >= MLA_VERSION, i.e. the library is at least as new as this header.
 */
#ifndef MLA_MLA_H_
#define MLA_MLA_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the exported entry points (the library may be built with hidden visibility). */
#if defined(__GNUC__)
#define MLA_API __attribute__((visibility("default")))
#else
#define MLA_API
#endif

/* ---- Version ------------------------------------------------------------------------ */

#define MLA_VERSION_MAJOR 0
#define MLA_VERSION_MINOR 2
#define MLA_VERSION_PATCH 0
#define MLA_MAKE_VERSION(major, minor, patch) ((major) * 10000 + (minor) * 100 + (patch))
#define MLA_VERSION MLA_MAKE_VERSION(MLA_VERSION_MAJOR, MLA_VERSION_MINOR, MLA_VERSION_PATCH)

/* The version of the library actually loaded, as MLA_MAKE_VERSION encodes it. */
MLA_API int32_t mla_version(void);
/* "0.2.0"; static storage. */
MLA_API const char* mla_version_string(void);

/* ---- Codes shared by several calls (values equal the C++ enums) --------------------- */

typedef enum mla_status_code {
  MLA_OK = 0,
  MLA_ERROR_INVALID_ARGUMENT = 1,    /* a tensor, shape, dtype or value breaks the contract */
  MLA_ERROR_INVALID_CONFIG = 2,      /* a device config is malformed or out of range */
  MLA_ERROR_UNSUPPORTED = 3,         /* valid, but this backend does not implement it */
  MLA_ERROR_BACKEND_UNAVAILABLE = 4, /* compiled out, or no device here */
  MLA_ERROR_OUT_OF_MEMORY = 5,
  MLA_ERROR_DEVICE = 6,              /* the device runtime failed; its message is kept */
  MLA_ERROR_IO = 7,                  /* a file could not be read or parsed */
  MLA_ERROR_INTERNAL = 8             /* a bug in this library */
} mla_status_code;

typedef enum mla_dtype {
  MLA_DTYPE_BF16 = 0,
  MLA_DTYPE_FP16 = 1,
  MLA_DTYPE_FP32 = 2,
  MLA_DTYPE_FP8_E4M3 = 3,
  MLA_DTYPE_INT8 = 4,
  MLA_DTYPE_INT32 = 5,
  MLA_DTYPE_INT64 = 6,
  MLA_DTYPE_FP64 = 7,
  MLA_DTYPE_UINT8 = 8 /* raw bytes: the byte-packed MLA_KV_FORMAT_FP8_DS_MLA cache */
} mla_dtype;

typedef enum mla_memory_space { MLA_MEMORY_HOST = 0, MLA_MEMORY_DEVICE = 1 } mla_memory_space;

/* DESIGN 2.1 latent attention with an absorbed query, or 2.2 with the up-projections fused. */
typedef enum mla_variant { MLA_VARIANT_LATENT = 0, MLA_VARIANT_ABSORB = 1 } mla_variant;

/* How the KV cache stores a token's d_c + d_r values (docs/kv-formats.md has the byte layouts).
 * The element dtype of the kv_cache tensor follows from the format:
 *   BF16, FP16, FP32   the values, 1152 / 1152 / 2304 bytes per token (d_c 512, d_r 64)
 *   FP8_E4M3           fp8 e4m3 values times kv_scale[0] (kv_scale float32 [1]); 576 bytes
 *   FP8_DS_MLA         uint8 [.., 656]: 512 fp8, 4 float32 scales (one per 128 latent values),
 *                      64 bf16 rope values; no kv_scale operand
 *   INT8               int8 codes times kv_scale[c] (kv_scale float32 [d_c + d_r]); 576 bytes
 * MLA_KV_FORMAT_FROM_DTYPE (0, what a zeroed or mla_problem_init'ed struct holds) takes the
 * format from the older kv_dtype field: the plain format of that dtype. */
typedef enum mla_kv_format {
  MLA_KV_FORMAT_FROM_DTYPE = 0,
  MLA_KV_FORMAT_BF16 = 1,
  MLA_KV_FORMAT_FP16 = 2,
  MLA_KV_FORMAT_FP32 = 3,
  MLA_KV_FORMAT_FP8_E4M3 = 4,
  MLA_KV_FORMAT_FP8_DS_MLA = 5,
  MLA_KV_FORMAT_INT8 = 6
} mla_kv_format;

/* Kept for programs built against version 0.1.0 headers, whose mla_problem had only kv_dtype
 * and kv_scaling: anything but NONE is refused (use kv_format). */
typedef enum mla_kv_scaling {
  MLA_KV_SCALING_NONE = 0,
  MLA_KV_SCALING_PER_TILE = 1,
  MLA_KV_SCALING_PER_TOKEN = 2
} mla_kv_scaling;

typedef enum mla_copy_kind {
  MLA_COPY_HOST_TO_DEVICE = 0,
  MLA_COPY_DEVICE_TO_HOST = 1,
  MLA_COPY_DEVICE_TO_DEVICE = 2
} mla_copy_kind;

/* Bytes per element of `dtype`; 0 for an unknown value. */
MLA_API size_t mla_dtype_size(int32_t dtype);

/* ---- Status ------------------------------------------------------------------------- */

typedef struct mla_status mla_status;

/* Each accessor accepts NULL (success): code MLA_OK, message "", backend "". The strings
 * belong to the status and live until mla_status_free. */
MLA_API mla_status_code mla_status_get_code(const mla_status* status);
MLA_API const char* mla_status_code_name(mla_status_code code); /* "invalid_argument"; static */
MLA_API const char* mla_status_message(const mla_status* status);
/* The backend the failing call was addressed to ("cpu"), or "" when none was involved. */
MLA_API const char* mla_status_backend(const mla_status* status);
/* Frees a status returned by any function. NULL is a no-op. Any thread. */
MLA_API void mla_status_free(mla_status* status);

/* Sets the library's log level: "trace", "debug", "info", "warn" (default), "error", "off".
 * The environment variable MLA_LOG_LEVEL sets it too. Logs go to stderr. */
MLA_API mla_status* mla_set_log_level(const char* level);

/* ---- Backends ----------------------------------------------------------------------- */

typedef struct mla_backend_list mla_backend_list;

typedef struct mla_backend_info {
  size_t struct_size;
  const char* name;        /* out: the config's "backend" value */
  const char* description; /* out: one line */
  int32_t available;       /* out: 1 when a device of this backend can be opened here */
  const char* reason;      /* out: why not, when not; a short device description when it is */
} mla_backend_info;

/* Lists the compiled-in backends and asks each whether it can run here (which may probe the
 * hardware; blocks). The caller frees *out with mla_backend_list_free. */
MLA_API mla_status* mla_backend_list_create(mla_backend_list** out);
MLA_API size_t mla_backend_list_count(const mla_backend_list* list);
/* Fills *info for entry `index`; its strings live until the list is freed. */
MLA_API mla_status* mla_backend_list_get(const mla_backend_list* list, size_t index, mla_backend_info* info);
MLA_API void mla_backend_list_free(mla_backend_list* list);

/* ---- Device ------------------------------------------------------------------------- */

typedef struct mla_device mla_device;

typedef struct mla_device_open_args {
  size_t struct_size;
  /* At most one of the two: a path to a JSON device config (configs/NAME.json), or the JSON
   * text itself. Neither: the built-in default (the cpu config). */
  const char* config_path;
  const char* config_json;
  mla_device* device; /* out: the caller frees it with mla_device_free */
} mla_device_open_args;

/* Reads and validates the config and opens the device it names. Fails with
 * MLA_ERROR_INVALID_CONFIG (every problem with its JSON path) or MLA_ERROR_BACKEND_UNAVAILABLE
 * (with the reason); never falls back to another backend. Blocks. */
MLA_API mla_status* mla_device_open(mla_device_open_args* args);
/* Releases the caller's reference; the device lives on while plans made from it do. NULL ok. */
MLA_API void mla_device_free(mla_device* device);
MLA_API const char* mla_device_backend(const mla_device* device); /* "cpu" */
MLA_API const char* mla_device_name(const mla_device* device);    /* the config's "name" */
/* Where tensors for this device must live: MLA_MEMORY_HOST for host backends. */
MLA_API mla_memory_space mla_device_memory_space(const mla_device* device);

typedef struct mla_allocate_args {
  size_t struct_size;
  mla_device* device;
  size_t bytes;
  void* ptr; /* out: 256-byte aligned memory in the device's space; free it with mla_device_deallocate */
} mla_allocate_args;

/* Allocates device memory (host memory on host backends). Blocks. Thread-safe. */
MLA_API mla_status* mla_device_allocate(mla_allocate_args* args);
/* Frees memory from mla_device_allocate on the same device. NULL ptr is a no-op. The memory
 * must not be in use by work still in flight on a stream. */
MLA_API void mla_device_deallocate(mla_device* device, void* ptr);

typedef struct mla_copy_args {
  size_t struct_size;
  mla_device* device;
  void* dst;
  const void* src;
  size_t bytes;
  int32_t kind; /* mla_copy_kind; host backends treat every kind as a host copy */
  void* stream; /* the backend's stream (cudaStream_t on cuda), NULL for the default */
} mla_copy_args;

/* Copies `bytes`. Host backends: complete on return. Device backends: ordered on `stream`
 * and possibly still in flight; call mla_device_synchronize before reading a host `dst` or
 * reusing a host `src`. */
MLA_API mla_status* mla_device_copy(const mla_copy_args* args);
/* Waits until all work on `stream` (NULL: the default stream) has finished. Blocks. */
MLA_API mla_status* mla_device_synchronize(mla_device* device, void* stream);

/* ---- Tensors ------------------------------------------------------------------------ */

#define MLA_MAX_RANK 4

/* A non-owning view, the C twin of mla::TensorView. The layout is frozen (no struct_size):
 * a future change would be a new type. An all-zero tensor is "absent" (unused operand). */
typedef struct mla_tensor {
  void* data;
  int32_t dtype; /* mla_dtype */
  int32_t rank;
  int64_t shape[MLA_MAX_RANK];
  int64_t strides[MLA_MAX_RANK]; /* in elements, not bytes */
  int32_t space;                 /* mla_memory_space */
} mla_tensor;

/* A dense row-major view of `data` with `rank` dimensions taken from `shape`. Returns an
 * all-zero tensor when rank is outside [1, MLA_MAX_RANK] (an operand the run then rejects). */
MLA_API mla_tensor mla_tensor_contiguous(void* data, int32_t dtype, int32_t rank, const int64_t* shape, int32_t space);

/* Every operand of one call; which ones are used depends on the variant (DESIGN 2.1, 2.2).
 * Unused ones stay all-zero. */
typedef struct mla_tensors {
  size_t struct_size;
  mla_tensor q;             /* latent: [b, s_q, h_q, d_qk] */
  mla_tensor q_nope;        /* absorb: [b, s_q, h_q, d_nope] */
  mla_tensor q_rope;        /* absorb: [b, s_q, h_q, d_r] */
  mla_tensor w_uk;          /* absorb: [h_q, d_nope, d_c] */
  mla_tensor w_uv;          /* absorb: [h_q, d_c, d_vh] */
  mla_tensor kv_cache;      /* [num_blocks, page_size, h_kv, token elements]: d_qk, or 656 bytes for FP8_DS_MLA */
  mla_tensor block_table;   /* int32 [b, max_blocks_per_seq] */
  mla_tensor cache_seqlens; /* int32 [b] */
  mla_tensor out;           /* [b, s_q, h_q, out width], dtype of q */
  mla_tensor lse;           /* fp32 [b, h_q, s_q] */
  /* Appended in 0.2: fp32 [1] for FP8_E4M3, [d_c + d_r] for INT8, all-zero for other formats.
   * In the device's memory, so a captured CUDA graph survives a recalibration. */
  mla_tensor kv_scale;
} mla_tensors;

/* ---- Problem and plan --------------------------------------------------------------- */

/* The shape and types of one decode call: the C twin of mla::Problem. */
typedef struct mla_problem {
  size_t struct_size;
  int32_t variant; /* mla_variant */
  int64_t batch;
  int64_t s_q;
  int64_t h_q;
  int64_t h_kv;
  int64_t d_c;
  int64_t d_r;
  int64_t d_nope; /* absorb only */
  int64_t d_vh;   /* absorb only */
  int64_t page_size;
  int64_t num_blocks;         /* physical blocks in kv_cache */
  int64_t max_blocks_per_seq; /* columns of block_table */
  int32_t causal;
  float softmax_scale; /* 0: the variant's default, 1/sqrt(d_qk) or 1/sqrt(d_nope + d_r) */
  int32_t dtype;       /* mla_dtype of q, weights and out */
  int32_t kv_dtype;    /* older field: used only when kv_format is MLA_KV_FORMAT_FROM_DTYPE */
  int32_t kv_scaling;  /* older field: must be MLA_KV_SCALING_NONE */
  int32_t kv_scale_tile; /* older field: ignored */
  int32_t kv_format;   /* appended in 0.2: mla_kv_format; 0 takes kv_dtype */
} mla_problem;

/* Sets struct_size and the defaults of mla::Problem: latent, b = 1, s_q = 1, h_q = 128,
 * h_kv = 1, d_c = 512, d_r = 64, d_nope = 128, d_vh = 128, page 64, bf16, not causal, kv_format
 * MLA_KV_FORMAT_FROM_DTYPE with kv_dtype bf16 — for a struct of `struct_size` bytes (the
 * caller's sizeof(mla_problem)): nothing past it is written. */
MLA_API void mla_problem_init_sized(mla_problem* problem, size_t struct_size);
/* The 0.1 entry point, kept for programs built against 0.1 headers: the same for the 0.1
 * struct (up to kv_scale_tile). Programs built against this header reach
 * mla_problem_init_sized with their own struct size through the macro below. */
MLA_API void mla_problem_init(mla_problem* problem);
#define mla_problem_init(problem) mla_problem_init_sized((problem), sizeof(mla_problem))

typedef struct mla_plan mla_plan;

typedef struct mla_plan_create_args {
  size_t struct_size;
  mla_device* device;
  const mla_problem* problem; /* read during the call only */
  mla_plan* plan;             /* out: the caller frees it with mla_plan_free */
} mla_plan_create_args;

/* Validates the problem and picks the kernel. Fails with the reason (MLA_ERROR_INVALID_ARGUMENT,
 * MLA_ERROR_UNSUPPORTED) when the backend cannot run it. Blocks; touches no tensor data. */
MLA_API mla_status* mla_plan_create(mla_plan_create_args* args);
MLA_API void mla_plan_free(mla_plan* plan); /* NULL ok; schedules keep the plan alive */
MLA_API const char* mla_plan_backend(const mla_plan* plan);
MLA_API const char* mla_plan_kernel_name(const mla_plan* plan);
/* Why this kernel was chosen: one or a few lines for logs. */
MLA_API const char* mla_plan_explain(const mla_plan* plan);
typedef struct mla_supports_args {
  size_t struct_size;
  mla_device* device;
  const mla_problem* problem; /* read during the call only */
  int32_t supported;          /* out: 1 when mla_plan_create would succeed */
  int32_t code;               /* out: mla_status_code plan creation would fail with, MLA_OK if supported */
  char* reason;               /* optional caller buffer for why not (NUL-terminated, truncated) */
  size_t reason_capacity;
  size_t reason_size;         /* out: bytes the full reason needs, without the NUL */
} mla_supports_args;

/* Asks whether the device can run a problem without making a plan: an unsupported or invalid
 * problem is an answer (supported = 0, code, reason), not an error. The status is non-NULL
 * only for bad arguments (a NULL device or problem, a short struct_size). Blocks; cheap. */
MLA_API mla_status* mla_device_supports(mla_supports_args* args);

/* Workspace one schedule of this plan holds at most. */
MLA_API size_t mla_plan_workspace_bytes(const mla_plan* plan);
/* The problem the plan was made for, written into the caller's struct (struct_size set). */
MLA_API mla_status* mla_plan_get_problem(const mla_plan* plan, mla_problem* problem);

/* ---- Schedule and run --------------------------------------------------------------- */

typedef struct mla_schedule mla_schedule;

typedef struct mla_schedule_create_args {
  size_t struct_size;
  const mla_plan* plan;
  mla_tensor cache_seqlens; /* int32 [b], in the device's memory */
  void* stream;
  mla_schedule* schedule; /* out: the caller frees it with mla_schedule_free */
} mla_schedule_create_args;

/* Partitions one decode step's work for these lengths; reuse it for every layer of the step.
 * Host backends read and check the lengths (blocks); device backends do not synchronise. */
MLA_API mla_status* mla_schedule_create(mla_schedule_create_args* args);
MLA_API void mla_schedule_free(mla_schedule* schedule); /* NULL ok; not while a run uses it */
MLA_API const char* mla_schedule_describe(const mla_schedule* schedule);

typedef struct mla_run_args {
  size_t struct_size;
  const mla_plan* plan;
  const mla_schedule* schedule; /* made by `plan` for the lengths in tensors->cache_seqlens */
  const mla_tensors* tensors;   /* read during the call only */
  void* stream;
  /* 1: read the lengths and block table and check every used block id first (a device
   * backend copies them to the host and synchronises). Off by default: it costs time. */
  int32_t validate_indices;
  double seconds;    /* out: time of the run when the backend knows it, else -1 */
  int32_t simulated; /* out: 1 when `seconds` comes from a timing model */
  /* Optional caller-owned buffer for the backend's JSON report of this run (engine busy
   * times, strategy, ...), NUL-terminated and truncated to fit. NULL/0: not wanted. */
  char* report_json;
  size_t report_json_capacity;
  size_t report_json_size; /* out: bytes the full report needs, without the NUL */
} mla_run_args;

/* Computes out and lse for one layer. Host backends: complete on return. Device backends:
 * asynchronous, ordered on `stream`; the tensors must stay valid until it completes.
 * One run at a time per schedule; the plan may serve several threads at once. */
MLA_API mla_status* mla_run(mla_run_args* args);

/* ---- Writing the cache --------------------------------------------------------------- */

typedef struct mla_write_kv_args {
  size_t struct_size;
  mla_device* device;
  int32_t kv_format;        /* mla_kv_format of kv_cache (not FROM_DTYPE) */
  mla_tensor kv_c;          /* [T, d_c] (h_kv 1) or [T, h_kv, d_c]; bf16, fp16 or fp32 */
  mla_tensor k_pe;          /* [T, d_r] or [T, h_kv, d_r]; the dtype of kv_c */
  mla_tensor slot_mapping;  /* int64 [T]: block * page_size + offset in the block; negative = skip */
  mla_tensor kv_cache;      /* written in place: [num_blocks, page_size, h_kv, token elements] */
  mla_tensor kv_scale;      /* as in mla_tensors (read only: write_kv never recalibrates) */
  void* stream;
  /* 1: check every slot < num_blocks * page_size before writing (host backends always do;
   * a device backend copies the slots to the host and synchronises). */
  int32_t validate_slots;
} mla_write_kv_args;

/* Quantizes T new tokens to the cache's format and writes each into its slot, like vLLM's
 * concat_and_cache_mla; nothing else in the cache changes, tokens with the same slot are written
 * in order. fp8 rounds to nearest even and saturates to +-448 (NaN stays NaN), int8 rounds to
 * nearest even and saturates to +-127 (NaN becomes 0), FP8_DS_MLA computes each group's
 * power-of-two scale. Host backends: complete on return. Device backends: ordered on `stream`. */
MLA_API mla_status* mla_write_kv(mla_write_kv_args* args);

/* ---- Context parallelism (every sequence's tokens split across ranks) ---------------- */

typedef struct mla_context_merge_args {
  size_t struct_size;
  const mla_plan* plan; /* the plan this rank ran its shard with (gives problem and device) */
  mla_tensor out;       /* this rank's partial out, replaced by the merged result */
  mla_tensor lse;       /* likewise */
  void* communicator;   /* the backend's native communicator: an ncclComm_t on cuda; stays the caller's */
  void* stream;
} mla_context_merge_args;

/* After this rank ran its shard of every sequence's tokens (docs/context-parallel.md: shards in
 * rank order, the newest tokens on the last rank), merges every rank's partial out and lse so
 * each rank holds the full result. cuda: NCCL collectives on `stream` (one all-gather, or with
 * the device config's context_parallel.exchange = "all_reduce" a max and a sum all-reduce),
 * then merge kernels; NCCL is loaded at run time (libnccl.so.2 or MLA_NCCL_LIBRARY). Host backends have no native
 * communicator and answer MLA_ERROR_UNSUPPORTED (the C++ API takes any mla::Communicator). */
MLA_API mla_status* mla_merge_context_parallel(mla_context_merge_args* args);

/* ---- Checking results --------------------------------------------------------------- */

typedef struct mla_reference_check_args {
  size_t struct_size;
  const mla_plan* plan;       /* gives the problem */
  const mla_tensors* tensors; /* every operand in host memory, out and lse holding the result */
  int32_t passed;             /* out: 1 when within the dtype's tolerance (bf16: rel L2 ~1e-2) */
  double max_abs_error;       /* out */
  double rel_l2_error;        /* out */
  double cosine_distance;     /* out */
  double lse_max_abs_error;   /* out: over finite lse entries */
  int64_t nonfinite_mismatches; /* out: positions where exactly one side is NaN/Inf */
  char* summary;              /* optional caller buffer for a one-line summary, truncated */
  size_t summary_capacity;
} mla_reference_check_args;

/* Recomputes the operator with the float64 reference (reading only valid tokens) and
 * compares out and lse with it. A mismatch is not an error: the status is NULL and
 * `passed` is 0. Blocks; costs about as much as a slow run. */
MLA_API mla_status* mla_reference_check(mla_reference_check_args* args);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MLA_MLA_H_ */
