"""Device, Plan and Schedule: the C++ object ladder (open_device -> plan -> schedule -> run)
over the C ABI. Each object holds a Python reference to its parent as well as the library's
own reference, so handles may be dropped in any order."""
import ctypes as C
import json
import os
import sys
from dataclasses import dataclass

from . import _abi, _lib
from ._tensors import BF16_BITS, Operand, check_placement, dtype_code, dtype_name, empty_like_kind
from .errors import InvalidArgumentError

_PROBLEM_INTS = ("batch", "s_q", "h_q", "h_kv", "d_c", "d_r", "d_nope", "d_vh", "page_size", "num_blocks",
                 "max_blocks_per_seq")


@dataclass(frozen=True)
class BackendInfo:
    name: str
    description: str
    available: bool
    reason: str


def backends():
    """The compiled-in backends and whether each can run here (may probe the hardware)."""
    L = _lib.lib()
    handle = C.c_void_p()
    _lib.check(L.mla_backend_list_create(C.byref(handle)))
    try:
        out = []
        for i in range(L.mla_backend_list_count(handle)):
            info = _abi.new(_abi.BackendInfo)
            _lib.check(L.mla_backend_list_get(handle, i, C.byref(info)))
            out.append(BackendInfo(_lib.text(info.name), _lib.text(info.description), bool(info.available),
                                   _lib.text(info.reason)))
        return out
    finally:
        L.mla_backend_list_free(handle)


def open_device(config=None):
    """Opens the device a config names.

    config: None (the embedded default, the cpu config); a path (str or os.PathLike) to a JSON
    config file; a dict (the config itself); or a str starting with "{" (JSON text)."""
    args = _abi.new(_abi.DeviceOpenArgs)
    if config is None:
        pass
    elif isinstance(config, dict):
        args.config_json = json.dumps(config).encode()
    elif isinstance(config, str) and config.lstrip().startswith("{"):
        args.config_json = config.encode()
    elif isinstance(config, (str, os.PathLike)):
        args.config_path = os.fsencode(config)
    else:
        raise InvalidArgumentError(f"open_device: config must be None, a path, a dict or JSON text, "
                                   f"got {type(config).__name__}")
    _lib.check(_lib.lib().mla_device_open(C.byref(args)))
    return Device(args.device)


# Schedules made while a stream was capturing a CUDA graph and not handed to the caller (the
# one run() makes for itself, the ones mla.flashmla keeps in its metadata): the graph replays
# into their workspace, and its end cannot be seen from here, so they live as long as the process.
_captured_schedules = []


def capturing(gpu):
    """True while torch's current stream on `gpu` is capturing a CUDA graph."""
    torch = sys.modules.get("torch")
    return gpu is not None and torch is not None and torch.cuda.is_current_stream_capturing()


def keep_for_graph(schedule):
    _captured_schedules.append(schedule)


def _stream_handle(stream, gpu):
    """The cudaStream_t to pass: the given one, else torch's current stream on `gpu`."""
    if stream is not None:
        if isinstance(stream, int):
            return stream
        handle = getattr(stream, "cuda_stream", None)  # torch.cuda.Stream
        if handle is None:
            raise InvalidArgumentError(f"stream: expected an int (cudaStream_t) or a torch.cuda.Stream, "
                                       f"got {type(stream).__name__}")
        return int(handle)
    if gpu is None:
        return None
    return int(sys.modules["torch"].cuda.current_stream(gpu).cuda_stream)


class Device:
    """An opened device config. Thread-safe; plans keep it alive."""

    def __init__(self, handle):
        self._handle = C.c_void_p(handle)
        L = _lib.lib()
        self.backend = _lib.text(L.mla_device_backend(self._handle))
        self.name = _lib.text(L.mla_device_name(self._handle))
        self.memory_space = "device" if L.mla_device_memory_space(self._handle) == _abi.MEMORY_DEVICE else "host"
        self._free = L.mla_device_free

    def __del__(self):
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            self._free(handle)

    def __repr__(self):
        return f"<mla.Device backend={self.backend!r} name={self.name!r}>"

    def synchronize(self, stream=None):
        """Waits for the work on `stream` (default: torch's current stream on cuda)."""
        gpu = None
        if self.memory_space == "device" and stream is None and "torch" in sys.modules:
            gpu = sys.modules["torch"].cuda.current_device()
        _lib.check(_lib.lib().mla_device_synchronize(self._handle, _stream_handle(stream, gpu)), self.backend)

    def plan(self, q=None, kv_cache=None, block_table=None, **kwargs):
        """A plan for one problem shape. Shapes come from the tensors given (q or q_nope/q_rope/
        w_uk/w_uv, kv_cache, block_table; anything with .shape and .dtype) and from keyword
        fields (batch, s_q, h_q, h_kv, d_c, d_r, d_nope, d_vh, page_size, num_blocks,
        max_blocks_per_seq); a field given both ways must agree. head_dim_v is FlashMLA's name
        for d_c (latent). dtype/kv_dtype: "bf16", "fp16", "fp32" or a NumPy/torch dtype; by
        default those of q (q_nope) and kv_cache. NumPy bf16 needs dtype="bf16" (uint16 bits).
        kv_format: "bf16", "fp16", "fp32", "fp8_e4m3", "fp8_ds_mla" or "int8"; by default the
        one kv_cache's dtype names (torch float8_e4m3fn, int8, uint8 = fp8_ds_mla), else the
        plain format of kv_dtype. An fp8_e4m3 cache held as uint8 bits (NumPy has no fp8)
        needs kv_format="fp8_e4m3"."""
        p = self._problem(q, kv_cache, block_table, **kwargs)
        args = _abi.new(_abi.PlanCreateArgs)
        args.device = self._handle
        args.problem = C.pointer(p)
        _lib.check(_lib.lib().mla_plan_create(C.byref(args)), self.backend)
        return Plan(self, args.plan)

    def supports(self, q=None, kv_cache=None, block_table=None, **kwargs):
        """Whether plan() with the same arguments would succeed, without making a plan:
        a Support (truthy when supported) with the library's code and reason otherwise."""
        p = self._problem(q, kv_cache, block_table, **kwargs)
        buf = C.create_string_buffer(1024)
        args = _abi.new(_abi.SupportsArgs)
        args.device = self._handle
        args.problem = C.pointer(p)
        args.reason = C.cast(buf, C.c_void_p)
        args.reason_capacity = len(buf)
        _lib.check(_lib.lib().mla_device_supports(C.byref(args)), self.backend)
        return Support(bool(args.supported), int(args.code), buf.value.decode("utf-8", "replace"))

    def _problem(self, q=None, kv_cache=None, block_table=None, *, q_nope=None, q_rope=None, w_uk=None, w_uv=None,
                 causal=False, softmax_scale=None, dtype=None, kv_dtype=None, kv_format=None, variant=None,
                 head_dim_v=None, **fields):
        unknown = set(fields) - set(_PROBLEM_INTS)
        if unknown:
            raise InvalidArgumentError(f"plan: unknown field(s) {sorted(unknown)}; known: {list(_PROBLEM_INTS)}",
                                       self.backend)
        p = _abi.Problem()
        _lib.lib().mla_problem_init_sized(C.byref(p), C.sizeof(p))
        p.kv_format = _kv_format_code(kv_format, kv_cache)
        absorb = variant == "absorb" or variant == _abi.VARIANT_ABSORB or any(
            t is not None for t in (q_nope, q_rope, w_uk, w_uv))
        if variant not in (None, "latent", "absorb", _abi.VARIANT_LATENT, _abi.VARIANT_ABSORB):
            raise InvalidArgumentError(f"plan: variant must be 'latent' or 'absorb', got {variant!r}", self.backend)
        p.variant = _abi.VARIANT_ABSORB if absorb else _abi.VARIANT_LATENT
        derived = {}  # field -> (value, which tensor said so)

        def take(field, value, source):
            value = int(value)
            if field in derived and derived[field][0] != value:
                raise InvalidArgumentError(f"plan: {source} gives {field} = {value}, but {derived[field][1]} "
                                           f"gives {derived[field][0]}", self.backend)
            derived[field] = (value, source)

        def shape_of(name, t, rank):
            if t is None:
                return None
            shape = tuple(int(s) for s in (t if isinstance(t, (tuple, list)) else t.shape))
            if len(shape) != rank:
                raise InvalidArgumentError(f"plan: {name} must have rank {rank}, got shape {list(shape)}", self.backend)
            return shape

        if head_dim_v is not None:
            take("d_vh" if absorb else "d_c", head_dim_v, "head_dim_v")
        for f in _PROBLEM_INTS:
            if f in fields and fields[f] is not None:
                take(f, fields[f], "the keyword " + f)
        qs = shape_of("q", q, 4)
        if qs:
            if absorb:
                raise InvalidArgumentError("plan: give q (latent) or q_nope/q_rope/w_uk/w_uv (absorb), not both",
                                           self.backend)
            take("batch", qs[0], "q")
            take("s_q", qs[1], "q")
            take("h_q", qs[2], "q")
        s = shape_of("q_nope", q_nope, 4)
        if s:
            for f, v in zip(("batch", "s_q", "h_q", "d_nope"), s):
                take(f, v, "q_nope")
        s = shape_of("q_rope", q_rope, 4)
        if s:
            for f, v in zip(("batch", "s_q", "h_q", "d_r"), s):
                take(f, v, "q_rope")
        s = shape_of("w_uk", w_uk, 3)
        if s:
            for f, v in zip(("h_q", "d_nope", "d_c"), s):
                take(f, v, "w_uk")
        s = shape_of("w_uv", w_uv, 3)
        if s:
            for f, v in zip(("h_q", "d_c", "d_vh"), s):
                take(f, v, "w_uv")
        ks = shape_of("kv_cache", kv_cache, 4)
        if ks:
            take("num_blocks", ks[0], "kv_cache")
            take("page_size", ks[1], "kv_cache")
            take("h_kv", ks[2], "kv_cache")
        bs = shape_of("block_table", block_table, 2)
        if bs:
            take("batch", bs[0], "block_table")
            take("max_blocks_per_seq", bs[1], "block_table")
        # The row width d_qk = d_c + d_r splits by whichever side is known (d_r defaults to 64);
        # a packed fp8_ds_mla token is not d_qk wide, so only q says it then.
        packed = p.kv_format == _abi.KV_FORMATS["fp8_ds_mla"]
        for name, width in (("q", qs[3] if qs else None), ("kv_cache", ks[3] if ks and not packed else None)):
            if width is None:
                continue
            if "d_c" in derived:
                take("d_r", width - derived["d_c"][0], name + " minus d_c")
            else:
                d_r = derived["d_r"][0] if "d_r" in derived else p.d_r
                take("d_r", d_r, name)
                take("d_c", width - d_r, name + " minus d_r")
        for f, (v, _) in derived.items():
            setattr(p, f, v)
        p.causal = 1 if causal else 0
        p.softmax_scale = 0.0 if softmax_scale is None else float(softmax_scale)
        lead = q if q is not None else q_nope
        if dtype is not None:
            p.dtype = dtype_code(dtype, "dtype")
        elif lead is not None and hasattr(lead, "dtype"):
            p.dtype = dtype_code(lead.dtype, "q_nope" if absorb else "q")
        if kv_dtype is not None:
            p.kv_dtype = dtype_code(kv_dtype, "kv_dtype")
        elif kv_cache is not None and hasattr(kv_cache, "dtype"):
            kd = getattr(kv_cache.dtype, "name", None)
            # A uint16 NumPy cache is bf16 bits exactly when the problem is bf16.
            p.kv_dtype = p.dtype if (kd == "uint16" and p.dtype == _abi.DTYPE_BF16) else dtype_code(
                kv_cache.dtype, "kv_cache")
        else:
            p.kv_dtype = p.dtype
        return p


def _kv_format_code(kv_format, kv_cache):
    """The mla_kv_format of a plan: the name given, or the one the cache's dtype names, or 0
    (the plain format of kv_dtype)."""
    if kv_format is not None:
        if kv_format not in _abi.KV_FORMATS:
            raise InvalidArgumentError(f"kv_format: expected one of {', '.join(_abi.KV_FORMATS)}, got {kv_format!r}")
        return _abi.KV_FORMATS[kv_format]
    kd = str(getattr(kv_cache, "dtype", "")).replace("torch.", "")
    return {"float8_e4m3fn": _abi.KV_FORMATS["fp8_e4m3"], "int8": _abi.KV_FORMATS["int8"],
            "uint8": _abi.KV_FORMATS["fp8_ds_mla"]}.get(kd, _abi.KV_FORMAT_FROM_DTYPE)


@dataclass(frozen=True)
class Support:
    """Device.supports' answer: truthy when plan() would succeed; else the code and reason."""
    supported: bool
    code: int
    reason: str

    def __bool__(self):
        return self.supported


@dataclass(frozen=True)
class CheckResult:
    """mla_reference_check's verdict: out and lse against the float64 reference."""
    passed: bool
    max_abs_error: float
    rel_l2_error: float
    cosine_distance: float
    lse_max_abs_error: float
    nonfinite_mismatches: int
    summary: str

    def __bool__(self):
        return self.passed


class Plan:
    """One problem shape on one device: validated, kernel chosen. Immutable, thread-safe."""

    def __init__(self, device, handle):
        self.device = device
        self._handle = C.c_void_p(handle)
        L = _lib.lib()
        self.backend = _lib.text(L.mla_plan_backend(self._handle))
        self.kernel_name = _lib.text(L.mla_plan_kernel_name(self._handle))
        self.explain = _lib.text(L.mla_plan_explain(self._handle))
        self.workspace_bytes = int(L.mla_plan_workspace_bytes(self._handle))
        p = _abi.new(_abi.Problem)
        _lib.check(L.mla_plan_get_problem(self._handle, C.byref(p)), self.backend)  # kv_dtype: the cache element
        self._problem = p
        self.problem = {f: getattr(p, f) for f, _ in _abi.Problem._fields_ if f != "struct_size"}
        self.problem["variant"] = "absorb" if p.variant == _abi.VARIANT_ABSORB else "latent"
        self.problem["causal"] = bool(p.causal)
        self.problem["dtype"] = dtype_name(p.dtype)
        self.problem["kv_dtype"] = dtype_name(p.kv_dtype)
        self.problem["kv_format"] = _abi.KV_FORMAT_NAMES.get(p.kv_format, str(p.kv_format))
        self._space = _abi.MEMORY_DEVICE if device.memory_space == "device" else _abi.MEMORY_HOST
        self._free = L.mla_plan_free
        # What the last run() reported: simulated or measured seconds (None when the backend
        # gives none) and whether they come from a timing model (sim_tpu).
        self.last_seconds = None
        self.last_simulated = False

    def __del__(self):
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            self._free(handle)

    def __repr__(self):
        return f"<mla.Plan backend={self.backend!r} kernel={self.kernel_name!r}>"

    # -- shapes the plan expects -----------------------------------------------------------
    def _expected(self):
        p = self._problem
        d_qk = p.d_c + p.d_r
        shapes = {
            "kv_cache": (p.kv_dtype, (p.num_blocks, p.page_size, p.h_kv, _abi.kv_token_elements(p.kv_format, p.d_c, p.d_r))),
            "block_table": (_abi.DTYPE_INT32, (p.batch, p.max_blocks_per_seq)),
            "cache_seqlens": (_abi.DTYPE_INT32, (p.batch,)),
            "lse": (_abi.DTYPE_FP32, (p.batch, p.h_q, p.s_q)),
        }
        scale = _abi.kv_scale_shape(p.kv_format, p.d_c, p.d_r)
        if scale:
            shapes["kv_scale"] = (_abi.DTYPE_FP32, scale)
        if p.variant == _abi.VARIANT_ABSORB:
            shapes["q_nope"] = (p.dtype, (p.batch, p.s_q, p.h_q, p.d_nope))
            shapes["q_rope"] = (p.dtype, (p.batch, p.s_q, p.h_q, p.d_r))
            shapes["w_uk"] = (p.dtype, (p.h_q, p.d_nope, p.d_c))
            shapes["w_uv"] = (p.dtype, (p.h_q, p.d_c, p.d_vh))
            shapes["out"] = (p.dtype, (p.batch, p.s_q, p.h_q, p.d_vh))
        else:
            shapes["q"] = (p.dtype, (p.batch, p.s_q, p.h_q, d_qk))
            shapes["out"] = (p.dtype, (p.batch, p.s_q, p.h_q, p.d_c))
        return shapes

    def _operands(self, given, space, allocate_outputs):
        """Checks every operand against the plan; allocates out/lse when not given."""
        expected = self._expected()
        extra = [n for n, v in given.items() if v is not None and n not in expected]
        if extra:
            what = f"the {self.problem['kv_format']} KV format" if extra[0] == "kv_scale" else \
                f"the {self.problem['variant']} variant"
            raise InvalidArgumentError(f"{extra[0]}: not an operand of {what}", self.backend)
        ops = {}
        for name, (dt, shape) in expected.items():
            obj = given.get(name)
            if obj is None:
                if name in ("out", "lse") and allocate_outputs:
                    continue
                what = f"the {self.problem['kv_format']} KV format" if name == "kv_scale" else \
                    f"the {self.problem['variant']} variant"
                raise InvalidArgumentError(f"{name}: missing ({what} needs it)", self.backend)
            op = self._operand(name, obj)
            op.expect(dt, shape, self.backend)
            if name in ("out", "lse") and not op.writeable:
                raise InvalidArgumentError(f"{name}: the array is read-only", self.backend)
            ops[name] = op
        lead = ops["q"] if "q" in ops else ops["q_nope"]
        for name in ("out", "lse"):
            if name not in ops:
                dt, shape = expected[name]
                op = Operand(name, empty_like_kind(lead, shape, dt, is_lse=(name == "lse")))
                op.expect(dt, shape, self.backend)
                ops[name] = op
        gpu = check_placement(ops.values(), space, self.backend)
        return ops, gpu

    def _operand(self, name, obj):
        try:
            return Operand(name, obj)
        except InvalidArgumentError as e:
            e.backend = e.backend or self.backend
            raise

    @staticmethod
    def _tensors(ops):
        t = _abi.new(_abi.Tensors)
        for name, op in ops.items():
            setattr(t, name, op.view())
        return t

    # -- the ladder ------------------------------------------------------------------------
    def schedule(self, cache_seqlens, stream=None):
        """The work partition of one decode step for these lengths (int32 [batch], in the
        device's memory). Reuse it for every layer of the step; one run at a time."""
        op = self._operand("cache_seqlens", cache_seqlens)
        op.expect(_abi.DTYPE_INT32, (self._problem.batch,), self.backend)
        gpu = check_placement([op], self._space, self.backend)
        args = _abi.new(_abi.ScheduleCreateArgs)
        args.plan = self._handle
        args.cache_seqlens = op.view()
        args.stream = _stream_handle(stream, gpu)
        _lib.check(_lib.lib().mla_schedule_create(C.byref(args)), self.backend)
        return Schedule(self, args.schedule)

    def run(self, q=None, kv_cache=None, block_table=None, cache_seqlens=None, *, schedule=None, out=None,
            lse=None, q_nope=None, q_rope=None, w_uk=None, w_uv=None, kv_scale=None, stream=None,
            validate_indices=False):
        """Computes one layer; returns (out, lse). out/lse are allocated (like q: NumPy, or torch
        on q's device) unless given, in which case they are filled and returned. Without a
        schedule one is made from cache_seqlens for this call. Host backends finish before
        returning; cuda runs asynchronously on `stream` (default torch.cuda.current_stream())."""
        given = dict(q=q, q_nope=q_nope, q_rope=q_rope, w_uk=w_uk, w_uv=w_uv, kv_cache=kv_cache,
                     kv_scale=kv_scale, block_table=block_table, cache_seqlens=cache_seqlens, out=out, lse=lse)
        ops, gpu = self._operands(given, self._space, allocate_outputs=True)
        handle_stream = _stream_handle(stream, gpu)
        if schedule is None:
            schedule = self.schedule(cache_seqlens, stream=handle_stream)
            if capturing(gpu):
                keep_for_graph(schedule)
        elif not isinstance(schedule, Schedule) or schedule.plan is not self:
            raise InvalidArgumentError("schedule: must come from this plan's schedule()", self.backend)
        tensors = self._tensors(ops)
        args = _abi.new(_abi.RunArgs)
        args.plan = self._handle
        args.schedule = schedule._handle
        args.tensors = C.pointer(tensors)
        args.stream = handle_stream
        args.validate_indices = 1 if validate_indices else 0
        _lib.check(_lib.lib().mla_run(C.byref(args)), self.backend)
        self.last_seconds = args.seconds if args.seconds >= 0 else None
        self.last_simulated = bool(args.simulated)
        return ops["out"].obj, ops["lse"].obj

    def check(self, out, lse, q=None, kv_cache=None, block_table=None, cache_seqlens=None, *, q_nope=None,
              q_rope=None, w_uk=None, w_uv=None, kv_scale=None, summary_capacity=512):
        """Compares out and lse with the float64 reference on the same inputs (blocks).
        CUDA tensors are copied to the host first. Returns a CheckResult (falsy on mismatch)."""
        given = dict(q=q, q_nope=q_nope, q_rope=q_rope, w_uk=w_uk, w_uv=w_uv, kv_cache=kv_cache,
                     kv_scale=kv_scale, block_table=block_table, cache_seqlens=cache_seqlens, out=out, lse=lse)
        host = {}
        for n, v in given.items():
            if v is not None and _is_cuda(v):
                v = v.cpu()
            host[n] = v
        ops, _ = self._operands(host, _abi.MEMORY_HOST, allocate_outputs=False)
        tensors = self._tensors(ops)
        buf = C.create_string_buffer(summary_capacity)
        args = _abi.new(_abi.ReferenceCheckArgs)
        args.plan = self._handle
        args.tensors = C.pointer(tensors)
        args.summary = C.cast(buf, C.c_void_p)
        args.summary_capacity = summary_capacity
        _lib.check(_lib.lib().mla_reference_check(C.byref(args)), self.backend)
        return CheckResult(bool(args.passed), args.max_abs_error, args.rel_l2_error, args.cosine_distance,
                           args.lse_max_abs_error, int(args.nonfinite_mismatches),
                           buf.value.decode("utf-8", "replace"))


def _is_cuda(x):
    return getattr(getattr(x, "device", None), "type", None) == "cuda"


class Schedule:
    """One decode step's work partition and workspace (from Plan.schedule).

    On cuda the workspace returns to the plan's pool when this object is dropped; keep it alive
    while work that uses it may still run (e.g. a CUDA graph that captured it is replayed)."""

    def __init__(self, plan, handle):
        self.plan = plan
        self._handle = C.c_void_p(handle)
        self.description = _lib.text(_lib.lib().mla_schedule_describe(self._handle))
        self._free = _lib.lib().mla_schedule_free

    def __del__(self):
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            self._free(handle)

    def __repr__(self):
        return f"<mla.Schedule {self.description!r}>"


def write_kv(device, kv_c, k_pe, slot_mapping, kv_cache, *, kv_scale=None, kv_format=None, stream=None,
             validate_slots=False):
    """Quantizes T new tokens into their cache slots in place (vLLM's concat_and_cache_mla):
    kv_c [T, d_c] and k_pe [T, d_r] (or [T, h_kv, ...]) in bf16/fp16/fp32, slot_mapping int64 [T]
    (block * page_size + offset; negative = skip), kv_cache as plan() takes it, kv_scale for
    fp8_e4m3 ([1]) and int8 ([d_c + d_r]). kv_format: by default the one kv_cache's dtype
    names (an fp8_e4m3 cache held as uint8 bits, as NumPy must, needs kv_format="fp8_e4m3"). Host backends
    finish before returning; cuda runs on `stream` (default torch.cuda.current_stream())."""
    code = _kv_format_code(kv_format, kv_cache)
    if code == _abi.KV_FORMAT_FROM_DTYPE:
        kd = Operand("kv_cache", kv_cache).dtype
        kd = _abi.DTYPE_BF16 if kd == BF16_BITS else kd
        code = {_abi.DTYPE_BF16: 1, _abi.DTYPE_FP16: 2, _abi.DTYPE_FP32: 3}.get(kd)
        if code is None:
            raise InvalidArgumentError(f"kv_cache: no KV format stores {dtype_name(kd)}; pass kv_format")
    ops = {name: Operand(name, obj) for name, obj in (("kv_c", kv_c), ("k_pe", k_pe), ("slot_mapping", slot_mapping),
                                                       ("kv_cache", kv_cache)) }
    if kv_scale is not None:
        ops["kv_scale"] = Operand("kv_scale", kv_scale)
    for name in ("kv_c", "k_pe"):  # NumPy bf16 inputs: uint16 bits, read as bf16
        if ops[name].dtype == BF16_BITS:
            ops[name].dtype = _abi.DTYPE_BF16
    element = _abi.KV_FORMAT_ELEMENT[code]
    cache = ops["kv_cache"]
    if cache.dtype == BF16_BITS and element == _abi.DTYPE_BF16 or \
            cache.dtype == _abi.DTYPE_UINT8 and element == _abi.DTYPE_FP8_E4M3:
        cache.dtype = element  # NumPy spellings of bf16 and fp8 (bit patterns)
    if not cache.writeable:
        raise InvalidArgumentError("kv_cache: the array is read-only", device.backend)
    space = _abi.MEMORY_DEVICE if device.memory_space == "device" else _abi.MEMORY_HOST
    gpu = check_placement(ops.values(), space, device.backend)
    args = _abi.new(_abi.WriteKvArgs)
    args.device = device._handle
    args.kv_format = code
    for name, op in ops.items():
        setattr(args, name, op.view())
    args.stream = _stream_handle(stream, gpu)
    args.validate_slots = 1 if validate_slots else 0
    _lib.check(_lib.lib().mla_write_kv(C.byref(args)), device.backend)
    return kv_cache
