"""Exceptions: one class per mla_status_code, each carrying the library's code, message and
backend. Checks the package makes itself before calling the library raise the same classes
(with code invalid_argument), so a caller catches one hierarchy whatever found the problem."""
from . import _abi

CODE_NAMES = {
    _abi.OK: "ok",
    _abi.ERROR_INVALID_ARGUMENT: "invalid_argument",
    _abi.ERROR_INVALID_CONFIG: "invalid_config",
    _abi.ERROR_UNSUPPORTED: "unsupported",
    _abi.ERROR_BACKEND_UNAVAILABLE: "backend_unavailable",
    _abi.ERROR_OUT_OF_MEMORY: "out_of_memory",
    _abi.ERROR_DEVICE: "device_error",
    _abi.ERROR_IO: "io_error",
    _abi.ERROR_INTERNAL: "internal",
}


class Error(Exception):
    """A failure reported by libmla (or found by the package before calling it).

    code: the mla_status_code value (int); code_name: "invalid_argument", ...;
    message: the library's sentence; backend: the backend involved ("" when none)."""
    code = _abi.ERROR_INTERNAL

    def __init__(self, message, backend="", code=None):
        if code is not None:
            self.code = code
        self.message = message
        self.backend = backend
        super().__init__(message)

    @property
    def code_name(self):
        return CODE_NAMES.get(self.code, str(self.code))

    def __str__(self):
        where = f" (backend {self.backend})" if self.backend else ""
        return f"[{self.code_name}] {self.message}{where}"


class InvalidArgumentError(Error, ValueError):
    code = _abi.ERROR_INVALID_ARGUMENT


class InvalidConfigError(Error, ValueError):
    code = _abi.ERROR_INVALID_CONFIG


class UnsupportedError(Error):
    code = _abi.ERROR_UNSUPPORTED


class BackendUnavailableError(Error):
    code = _abi.ERROR_BACKEND_UNAVAILABLE


class OutOfMemoryError(Error, MemoryError):
    code = _abi.ERROR_OUT_OF_MEMORY


class DeviceError(Error):
    code = _abi.ERROR_DEVICE


class IoError(Error):
    code = _abi.ERROR_IO


class InternalError(Error):
    code = _abi.ERROR_INTERNAL


class LibraryNotFoundError(Error, ImportError):
    """libmla.so could not be loaded (not a library status: code internal)."""


_BY_CODE = {cls.code: cls for cls in (InvalidArgumentError, InvalidConfigError, UnsupportedError,
                                      BackendUnavailableError, OutOfMemoryError, DeviceError, IoError,
                                      InternalError)}


def error_from_status(code, message, backend=""):
    cls = _BY_CODE.get(code, Error)
    return cls(message, backend, code=code)
