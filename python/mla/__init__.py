"""mla: the MLA decode attention operator from Python (NumPy arrays and PyTorch tensors).

    import mla
    dev = mla.open_device()                     # the embedded cpu config; or a path / dict
    plan = dev.plan(q=q, kv_cache=kv, block_table=bt, causal=True)
    out, lse = plan.run(q, kv, bt, cache_seqlens)

A pure-Python layer over libmla.so's C ABI (ctypes). mla.flashmla is a drop-in for FlashMLA's
dense decode API. docs/python.md has the whole story.
"""
from ._bf16 import bf16_to_float32, float32_to_bf16
from ._abi import KV_FORMATS as _KV_FORMATS
from ._device import BackendInfo, CheckResult, Device, Plan, Schedule, Support, backends, open_device, write_kv
from ._lib import library_path, library_source
from .errors import (BackendUnavailableError, DeviceError, Error, InternalError, InvalidArgumentError,
                     InvalidConfigError, IoError, LibraryNotFoundError, OutOfMemoryError, UnsupportedError)

KV_FORMATS = tuple(_KV_FORMATS)  # the names kv_format takes: bf16, fp16, fp32, fp8_e4m3, fp8_ds_mla, int8

__version__ = "0.2.0"  # the package; mla.version() is the loaded library's


def version():
    """The loaded library's version string ("0.2.0")."""
    from . import _lib
    return _lib.text(_lib.lib().mla_version_string())


def set_log_level(level):
    """The library's log level: trace, debug, info, warn (default), error, off."""
    from . import _lib
    _lib.check(_lib.lib().mla_set_log_level(str(level).encode()))


__all__ = ["BackendInfo", "CheckResult", "Device", "Plan", "Schedule", "Support", "backends", "open_device",
           "write_kv", "KV_FORMATS",
           "library_path", "library_source", "version", "set_log_level", "bf16_to_float32", "float32_to_bf16",
           "Error", "InvalidArgumentError", "InvalidConfigError", "UnsupportedError", "BackendUnavailableError",
           "OutOfMemoryError", "DeviceError", "IoError", "InternalError", "LibraryNotFoundError"]
