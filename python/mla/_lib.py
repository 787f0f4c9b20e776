"""Finds and loads libmla.so, declares the C prototypes, and turns a returned status into an
exception. Loaded lazily on first use so that `import mla` never fails for lack of the library
(mla.library_path() then says what was tried)."""
import ctypes as C
import os
import threading

from . import _abi
from .errors import error_from_status, LibraryNotFoundError

_SONAMES = ("libmla.so.0", "libmla.so")
_lock = threading.Lock()
_lib = None
_path = None
_how = None


def _candidates():
    """(path, how) pairs in the order they are tried; see docs/python.md."""
    env = os.environ.get("MLA_LIBRARY")
    if env:
        # An explicit choice is the only one tried: falling back would hide a typo.
        yield env, "MLA_LIBRARY"
        return
    pkg = os.path.dirname(os.path.abspath(__file__))
    # Beside the package (vendored copy), then the layouts CMake produces:
    #   <prefix>/lib/python/mla  -> <prefix>/lib/libmla.so.0   (cmake --install)
    #   <build>/python/mla       -> <build>/libmla.so.0         (the build tree's copy)
    #   <source>/python/mla      -> <source>/build/libmla.so.0  (PYTHONPATH=python, default build dir)
    for folder in (pkg, os.path.dirname(pkg), os.path.dirname(os.path.dirname(pkg)),
                   os.path.join(os.path.dirname(os.path.dirname(pkg)), "build")):
        for name in _SONAMES:
            path = os.path.join(folder, name)
            if os.path.exists(path):
                yield path, "beside the package"
    for name in _SONAMES:
        yield name, "loader path"


def _loaded_file(lib, fallback):
    """The file the dynamic loader actually mapped for `lib` (dladdr on one of its symbols)."""
    class DlInfo(C.Structure):
        _fields_ = [("dli_fname", C.c_char_p), ("dli_fbase", C.c_void_p),
                    ("dli_sname", C.c_char_p), ("dli_saddr", C.c_void_p)]
    try:
        libdl = C.CDLL(None)
        dladdr = libdl.dladdr
        dladdr.argtypes = [C.c_void_p, C.POINTER(DlInfo)]
        info = DlInfo()
        if dladdr(C.cast(lib.mla_version, C.c_void_p), C.byref(info)) and info.dli_fname:
            return os.path.realpath(info.dli_fname.decode())
    except (AttributeError, OSError):
        pass
    return fallback


def _declare(lib):
    P, S, I32, SZ = C.c_void_p, C.c_size_t, C.c_int32, C.c_size_t
    protos = {
        "mla_version": (I32, []),
        "mla_version_string": (C.c_char_p, []),
        "mla_dtype_size": (SZ, [I32]),
        "mla_status_get_code": (C.c_int, [P]),
        "mla_status_code_name": (C.c_char_p, [C.c_int]),
        "mla_status_message": (C.c_char_p, [P]),
        "mla_status_backend": (C.c_char_p, [P]),
        "mla_status_free": (None, [P]),
        "mla_set_log_level": (P, [C.c_char_p]),
        "mla_backend_list_create": (P, [C.POINTER(C.c_void_p)]),
        "mla_backend_list_count": (S, [P]),
        "mla_backend_list_get": (P, [P, S, C.POINTER(_abi.BackendInfo)]),
        "mla_backend_list_free": (None, [P]),
        "mla_device_open": (P, [C.POINTER(_abi.DeviceOpenArgs)]),
        "mla_device_free": (None, [P]),
        "mla_device_backend": (C.c_char_p, [P]),
        "mla_device_name": (C.c_char_p, [P]),
        "mla_device_memory_space": (C.c_int, [P]),
        "mla_device_synchronize": (P, [P, P]),
        "mla_problem_init_sized": (None, [C.POINTER(_abi.Problem), SZ]),
        "mla_device_supports": (P, [C.POINTER(_abi.SupportsArgs)]),
        "mla_write_kv": (P, [C.POINTER(_abi.WriteKvArgs)]),
        "mla_plan_create": (P, [C.POINTER(_abi.PlanCreateArgs)]),
        "mla_plan_free": (None, [P]),
        "mla_plan_backend": (C.c_char_p, [P]),
        "mla_plan_kernel_name": (C.c_char_p, [P]),
        "mla_plan_explain": (C.c_char_p, [P]),
        "mla_plan_workspace_bytes": (S, [P]),
        "mla_plan_get_problem": (P, [P, C.POINTER(_abi.Problem)]),
        "mla_schedule_create": (P, [C.POINTER(_abi.ScheduleCreateArgs)]),
        "mla_schedule_free": (None, [P]),
        "mla_schedule_describe": (C.c_char_p, [P]),
        "mla_run": (P, [C.POINTER(_abi.RunArgs)]),
        "mla_reference_check": (P, [C.POINTER(_abi.ReferenceCheckArgs)]),
    }
    for name, (restype, argtypes) in protos.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


def lib():
    """The loaded library (loads it on first call)."""
    global _lib, _path, _how
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        tried = []
        for path, how in _candidates():
            try:
                handle = C.CDLL(path, mode=os.RTLD_LOCAL)
            except OSError as e:
                tried.append(f"{path} ({how}): {e}")
                continue
            _declare(handle)
            _path = _loaded_file(handle, path)
            _how = how
            _lib = handle
            return _lib
        raise LibraryNotFoundError(
            "libmla.so not found; set MLA_LIBRARY to its path, or install the package with "
            "`cmake --install`. Tried:\n  " + "\n  ".join(tried))


def library_path():
    """The file of the loaded libmla.so (loading it if needed)."""
    lib()
    return _path


def library_source():
    """How the library was found: "MLA_LIBRARY", "beside the package" or "loader path"."""
    lib()
    return _how


def check(status, backend=""):
    """Raises the mla.Error subclass for a non-NULL status, after freeing it."""
    if not status:
        return
    L = lib()
    try:
        code = int(L.mla_status_get_code(status))
        message = (L.mla_status_message(status) or b"").decode("utf-8", "replace")
        where = (L.mla_status_backend(status) or b"").decode("utf-8", "replace") or backend
    finally:
        L.mla_status_free(status)
    raise error_from_status(code, message, where)


def text(raw):
    return (raw or b"").decode("utf-8", "replace")
