"""ctypes mirrors of the structs and enums in core/include/mla/mla.h.

Every argument struct starts with `struct_size`, which the package sets from ctypes.sizeof, so
the library reads exactly the fields declared here. mla.h only ever appends fields: appending
one here is one more line at the end of its `_fields_` list, nothing else changes.
"""
import ctypes as C

MAX_RANK = 4  # MLA_MAX_RANK

# mla_status_code
OK = 0
ERROR_INVALID_ARGUMENT = 1
ERROR_INVALID_CONFIG = 2
ERROR_UNSUPPORTED = 3
ERROR_BACKEND_UNAVAILABLE = 4
ERROR_OUT_OF_MEMORY = 5
ERROR_DEVICE = 6
ERROR_IO = 7
ERROR_INTERNAL = 8

# mla_dtype
DTYPE_BF16 = 0
DTYPE_FP16 = 1
DTYPE_FP32 = 2
DTYPE_FP8_E4M3 = 3
DTYPE_INT8 = 4
DTYPE_INT32 = 5
DTYPE_INT64 = 6
DTYPE_FP64 = 7
DTYPE_UINT8 = 8  # raw bytes: the fp8_ds_mla cache
DTYPE_NAMES = {DTYPE_BF16: "bf16", DTYPE_FP16: "fp16", DTYPE_FP32: "fp32", DTYPE_FP8_E4M3: "fp8_e4m3",
               DTYPE_INT8: "int8", DTYPE_INT32: "int32", DTYPE_INT64: "int64", DTYPE_FP64: "fp64",
               DTYPE_UINT8: "uint8"}

# mla_kv_format (0: take the older kv_dtype field)
KV_FORMAT_FROM_DTYPE = 0
KV_FORMATS = {"bf16": 1, "fp16": 2, "fp32": 3, "fp8_e4m3": 4, "fp8_ds_mla": 5, "int8": 6}
KV_FORMAT_NAMES = {code: name for name, code in KV_FORMATS.items()}
# The kv_cache element dtype of each format (each format has its own, so a cache names its format).
KV_FORMAT_ELEMENT = {1: DTYPE_BF16, 2: DTYPE_FP16, 3: DTYPE_FP32, 4: DTYPE_FP8_E4M3, 5: DTYPE_UINT8, 6: DTYPE_INT8}
KV_SCALE_GROUP = 128  # latent values per in-token scale of fp8_ds_mla


def kv_token_elements(kv_format, d_c, d_r):
    """The kv_cache's last dimension for a format: d_c + d_r, or fp8_ds_mla's packed bytes."""
    if kv_format == KV_FORMATS["fp8_ds_mla"]:
        return d_c + 4 * (d_c // KV_SCALE_GROUP) + 2 * d_r
    return d_c + d_r


def kv_scale_shape(kv_format, d_c, d_r):
    """The kv_scale operand's shape, or None when the format has none."""
    if kv_format == KV_FORMATS["fp8_e4m3"]:
        return (1,)
    if kv_format == KV_FORMATS["int8"]:
        return (d_c + d_r,)
    return None

# mla_memory_space
MEMORY_HOST = 0
MEMORY_DEVICE = 1

# mla_variant
VARIANT_LATENT = 0
VARIANT_ABSORB = 1


class Tensor(C.Structure):
    """mla_tensor: frozen layout (no struct_size). All zero means "absent"."""
    _fields_ = [
        ("data", C.c_void_p),
        ("dtype", C.c_int32),
        ("rank", C.c_int32),
        ("shape", C.c_int64 * MAX_RANK),
        ("strides", C.c_int64 * MAX_RANK),  # in elements
        ("space", C.c_int32),
    ]


class BackendInfo(C.Structure):
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("name", C.c_char_p),
        ("description", C.c_char_p),
        ("available", C.c_int32),
        ("reason", C.c_char_p),
    ]


class DeviceOpenArgs(C.Structure):
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("config_path", C.c_char_p),
        ("config_json", C.c_char_p),
        ("device", C.c_void_p),
    ]


# The operands of one call, in mla.h's order. Kept as a list because Tensors is built from it
# and the package walks it to fill and check operands.
TENSOR_FIELDS = ["q", "q_nope", "q_rope", "w_uk", "w_uv", "kv_cache", "block_table", "cache_seqlens",
                 "out", "lse", "kv_scale"]


class Tensors(C.Structure):
    _fields_ = [("struct_size", C.c_size_t)] + [(name, Tensor) for name in TENSOR_FIELDS]


class Problem(C.Structure):
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("variant", C.c_int32),
        ("batch", C.c_int64),
        ("s_q", C.c_int64),
        ("h_q", C.c_int64),
        ("h_kv", C.c_int64),
        ("d_c", C.c_int64),
        ("d_r", C.c_int64),
        ("d_nope", C.c_int64),
        ("d_vh", C.c_int64),
        ("page_size", C.c_int64),
        ("num_blocks", C.c_int64),
        ("max_blocks_per_seq", C.c_int64),
        ("causal", C.c_int32),
        ("softmax_scale", C.c_float),
        ("dtype", C.c_int32),
        ("kv_dtype", C.c_int32),
        ("kv_scaling", C.c_int32),
        ("kv_scale_tile", C.c_int32),
        ("kv_format", C.c_int32),
    ]


class SupportsArgs(C.Structure):
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("device", C.c_void_p),
        ("problem", C.POINTER(Problem)),
        ("supported", C.c_int32),
        ("code", C.c_int32),
        ("reason", C.c_void_p),  # caller buffer
        ("reason_capacity", C.c_size_t),
        ("reason_size", C.c_size_t),
    ]


class WriteKvArgs(C.Structure):
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("device", C.c_void_p),
        ("kv_format", C.c_int32),
        ("kv_c", Tensor),
        ("k_pe", Tensor),
        ("slot_mapping", Tensor),
        ("kv_cache", Tensor),
        ("kv_scale", Tensor),
        ("stream", C.c_void_p),
        ("validate_slots", C.c_int32),
    ]


class PlanCreateArgs(C.Structure):
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("device", C.c_void_p),
        ("problem", C.POINTER(Problem)),
        ("plan", C.c_void_p),
    ]


class ScheduleCreateArgs(C.Structure):
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("plan", C.c_void_p),
        ("cache_seqlens", Tensor),
        ("stream", C.c_void_p),
        ("schedule", C.c_void_p),
    ]


class RunArgs(C.Structure):
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("plan", C.c_void_p),
        ("schedule", C.c_void_p),
        ("tensors", C.POINTER(Tensors)),
        ("stream", C.c_void_p),
        ("validate_indices", C.c_int32),
        ("seconds", C.c_double),
        ("simulated", C.c_int32),
        ("report_json", C.c_void_p),  # caller buffer; c_void_p so ctypes does not copy it
        ("report_json_capacity", C.c_size_t),
        ("report_json_size", C.c_size_t),
    ]


class ReferenceCheckArgs(C.Structure):
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("plan", C.c_void_p),
        ("tensors", C.POINTER(Tensors)),
        ("passed", C.c_int32),
        ("max_abs_error", C.c_double),
        ("rel_l2_error", C.c_double),
        ("cosine_distance", C.c_double),
        ("lse_max_abs_error", C.c_double),
        ("nonfinite_mismatches", C.c_int64),
        ("summary", C.c_void_p),  # caller buffer
        ("summary_capacity", C.c_size_t),
    ]


def new(struct_type):
    """A zeroed argument struct with struct_size set, as mla.h asks."""
    s = struct_type()
    s.struct_size = C.sizeof(struct_type)
    return s
