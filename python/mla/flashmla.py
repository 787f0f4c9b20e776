"""A drop-in for FlashMLA's dense decode Python API (flash_mla.get_mla_metadata and
flash_mla.flash_mla_with_kvcache): change `from flash_mla import ...` to
`from mla.flashmla import ...` and the rest of the code stays.

Where it runs: CUDA tensors on the cuda backend (the GPU the tensors are on, torch's current
stream); CPU tensors on the embedded default config (the cpu backend); or, after
use_device(device), always on that device. Options of FlashMLA that mla does not have (sparse
attention, attention sinks, FP8 KV cache, extra KV) raise mla.UnsupportedError.

The metadata object plays FlashMLA's role: the first call of a decode step makes the plan and
the schedule (the work partition for this step's lengths) and stores them in it; later calls
with the same object (the other layers of the step) reuse them. As with FlashMLA, reuse it only
while the shapes and the values of cache_seqlens stay the same; get a new one each step.
"""
import sys
import threading
from collections import OrderedDict

from . import _device
from .errors import InvalidArgumentError, UnsupportedError

__all__ = ["FlashMLASchedMeta", "get_mla_metadata", "flash_mla_with_kvcache", "use_device"]

_lock = threading.Lock()
_chosen = None          # the Device from use_device(), or None
_default_devices = {}   # "cpu" or CUDA index -> Device
_plans = OrderedDict()  # (device id, problem key) -> Plan, least recently used first
_MAX_PLANS = 64


class FlashMLASchedMeta:
    """What get_mla_metadata returns: filled by the first flash_mla_with_kvcache call.

    `have_initialized` and `config` mirror FlashMLA's fields; `tile_scheduler_metadata` and
    `num_splits` exist for code that inspects them and stay None (the schedule is mla's)."""

    def __init__(self):
        self.have_initialized = False
        self.config = None
        self.tile_scheduler_metadata = None
        self.num_splits = None
        self.plan = None
        self.schedule = None

    def __repr__(self):
        state = f"plan {self.plan.kernel_name}" if self.plan else "not yet used"
        return f"<mla.flashmla.FlashMLASchedMeta {state}>"


def get_mla_metadata(*args, **kwargs):
    """Returns (FlashMLASchedMeta(), None). Arguments are accepted and ignored, so both the
    current call get_mla_metadata() and the old one get_mla_metadata(cache_seqlens,
    s_q * h_q // h_kv, h_kv) work; the old code's `num_splits` then is None, as FlashMLA wants."""
    return FlashMLASchedMeta(), None


def use_device(device):
    """Runs every later call on `device` (an mla.Device, a config path/dict for
    mla.open_device, or None to go back to choosing by the tensors' device)."""
    global _chosen
    if device is not None and not isinstance(device, _device.Device):
        device = _device.open_device(device)
    with _lock:
        _chosen = device
    return device


def _device_for(q):
    if _chosen is not None:
        return _chosen
    gpu = getattr(q, "device", None)
    key = gpu.index if getattr(gpu, "type", None) == "cuda" else "cpu"
    if key == "cpu":
        config = None  # the embedded default: the cpu backend
    else:
        if key is None:
            key = sys.modules["torch"].cuda.current_device()
        config = {"backend": "cuda", "name": f"cuda:{key} (mla.flashmla)", "cuda": {"device_index": key}}
    with _lock:
        dev = _default_devices.get(key)
    if dev is None:
        dev = _device.open_device(config)
        with _lock:
            dev = _default_devices.setdefault(key, dev)
    return dev


def _plan_for(device, q, k_cache, block_table, head_dim_v, softmax_scale, causal):
    key = (id(device), tuple(q.shape), str(q.dtype), tuple(k_cache.shape), str(k_cache.dtype),
           tuple(block_table.shape), int(head_dim_v), float(softmax_scale), bool(causal))
    with _lock:
        plan = _plans.get(key)
        if plan is not None and plan.device is device:
            _plans.move_to_end(key)
            return plan
    plan = device.plan(q=q, kv_cache=k_cache, block_table=block_table, head_dim_v=head_dim_v,
                       softmax_scale=softmax_scale, causal=causal)
    with _lock:
        _plans[key] = plan
        while len(_plans) > _MAX_PLANS:
            _plans.popitem(last=False)
    return plan


def flash_mla_with_kvcache(q, k_cache, block_table, cache_seqlens, head_dim_v, tile_scheduler_metadata,
                           num_splits=None, softmax_scale=None, causal=False, is_fp8_kvcache=False, indices=None,
                           attn_sink=None, extra_k_cache=None, extra_indices_in_kvcache=None, topk_length=None,
                           extra_topk_length=None):
    """FlashMLA's dense decode. q [b, s_q, h_q, d_qk]; k_cache [num_blocks, page_size, h_kv,
    d_qk]; block_table int32 [b, max_blocks]; cache_seqlens int32 [b]; head_dim_v: the value
    width (512 for DeepSeek); softmax_scale default d_qk ** -0.5. Returns out [b, s_q, h_q,
    head_dim_v] in q's dtype and lse float32 [b, h_q, s_q]."""
    for name, value in (("indices", indices), ("attn_sink", attn_sink), ("extra_k_cache", extra_k_cache),
                        ("extra_indices_in_kvcache", extra_indices_in_kvcache), ("topk_length", topk_length),
                        ("extra_topk_length", extra_topk_length)):
        if value is not None:
            raise UnsupportedError(f"flash_mla_with_kvcache: {name} (FlashMLA's sparse attention / attention sink) "
                                   "is not supported by mla; only dense decode is")
    if is_fp8_kvcache:
        raise UnsupportedError("flash_mla_with_kvcache: is_fp8_kvcache=True is not supported by mla yet "
                               "(bf16 / fp16 caches only)")
    if not isinstance(tile_scheduler_metadata, FlashMLASchedMeta):
        raise InvalidArgumentError("flash_mla_with_kvcache: tile_scheduler_metadata must come from "
                                   f"mla.flashmla.get_mla_metadata(), got {type(tile_scheduler_metadata).__name__}")
    if num_splits is not None:
        raise InvalidArgumentError("flash_mla_with_kvcache: num_splits must be None (as get_mla_metadata returns)")
    if block_table is None or cache_seqlens is None:
        raise InvalidArgumentError("flash_mla_with_kvcache: dense decode needs block_table and cache_seqlens")
    if len(q.shape) != 4 or len(k_cache.shape) != 4:
        raise InvalidArgumentError(f"flash_mla_with_kvcache: q and k_cache must have rank 4, got "
                                   f"{list(q.shape)} and {list(k_cache.shape)}")
    if softmax_scale is None:
        softmax_scale = q.shape[-1] ** -0.5
    meta = tile_scheduler_metadata
    config = (int(q.shape[0]), int(q.shape[1]), int(q.shape[2]), int(k_cache.shape[1]), int(k_cache.shape[2]),
              bool(causal))
    if meta.have_initialized:
        if meta.config != config:
            raise InvalidArgumentError(
                "flash_mla_with_kvcache: the arguments do not match the tile_scheduler_metadata made by the first "
                f"call of this step ((b, s_q, h_q, page_size, h_kv, causal) = {config}, first call {meta.config}); "
                "get a new one with get_mla_metadata() for a new shape")
    device = _device_for(q)
    plan = _plan_for(device, q, k_cache, block_table, head_dim_v, softmax_scale, causal)
    if not meta.have_initialized or meta.plan is not plan:
        # First call of the step (or a new dtype/scale/head_dim_v with the same metadata):
        # partition the work for these lengths.
        schedule = plan.schedule(cache_seqlens)
        if _device.capturing(getattr(q, "device", None) if getattr(q, "is_cuda", False) else None):
            # The metadata object may be dropped while the captured graph is still replayed.
            _device.keep_for_graph(schedule)
        meta.plan, meta.schedule = plan, schedule
        meta.config = config
        meta.have_initialized = True
    return plan.run(q, k_cache, block_table, cache_seqlens, schedule=meta.schedule)
