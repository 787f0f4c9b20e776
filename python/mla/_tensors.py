"""NumPy arrays and PyTorch tensors as mla_tensor views, with the checks the package makes
before it calls the library (dtype, shape, memory space, layout).

Neither NumPy nor PyTorch is imported here: an object is recognised through the modules the
caller has already imported (sys.modules), so `import mla` needs neither.

NumPy has no bfloat16. A NumPy operand of a bf16 problem is a uint16 array holding the bf16
bit patterns (mla.float32_to_bf16 / mla.bf16_to_float32 convert); a uint16 array is accepted
only where the problem's dtype is bf16, never guessed.
"""
import sys

from . import _abi
from .errors import InvalidArgumentError

BF16_BITS = "uint16 (bf16 bits)"  # the dtype tag of a NumPy uint16 operand

_NUMPY_DTYPES = {"float16": _abi.DTYPE_FP16, "float32": _abi.DTYPE_FP32, "float64": _abi.DTYPE_FP64,
                 "int8": _abi.DTYPE_INT8, "int32": _abi.DTYPE_INT32, "int64": _abi.DTYPE_INT64,
                 "uint8": _abi.DTYPE_UINT8}
_TORCH_DTYPES = {"bfloat16": _abi.DTYPE_BF16, "float16": _abi.DTYPE_FP16, "float32": _abi.DTYPE_FP32,
                 "float64": _abi.DTYPE_FP64, "int8": _abi.DTYPE_INT8, "int32": _abi.DTYPE_INT32,
                 "int64": _abi.DTYPE_INT64, "float8_e4m3fn": _abi.DTYPE_FP8_E4M3, "uint8": _abi.DTYPE_UINT8}
_NAMES = {"bf16": _abi.DTYPE_BF16, "bfloat16": _abi.DTYPE_BF16, "fp16": _abi.DTYPE_FP16,
          "float16": _abi.DTYPE_FP16, "half": _abi.DTYPE_FP16, "fp32": _abi.DTYPE_FP32,
          "float32": _abi.DTYPE_FP32, "float": _abi.DTYPE_FP32, "fp8_e4m3": _abi.DTYPE_FP8_E4M3,
          "int8": _abi.DTYPE_INT8, "int32": _abi.DTYPE_INT32, "int64": _abi.DTYPE_INT64,
          "fp64": _abi.DTYPE_FP64, "float64": _abi.DTYPE_FP64, "uint8": _abi.DTYPE_UINT8}


def _is_numpy(x):
    np = sys.modules.get("numpy")
    return np is not None and isinstance(x, np.ndarray)


def _is_torch(x):
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def dtype_code(dtype, what="dtype"):
    """An mla_dtype from "bf16"/"fp16"/"fp32"/..., a NumPy dtype or a torch.dtype."""
    if isinstance(dtype, int) and dtype in _abi.DTYPE_NAMES:
        return dtype
    if isinstance(dtype, str) and dtype.lower() in _NAMES:
        return _NAMES[dtype.lower()]
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(dtype, torch.dtype):
        name = str(dtype).replace("torch.", "")
        if name in _TORCH_DTYPES:
            return _TORCH_DTYPES[name]
    np = sys.modules.get("numpy")
    if np is not None:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = None
        if name in _NUMPY_DTYPES:
            return _NUMPY_DTYPES[name]
        if name == "uint16":
            raise InvalidArgumentError(
                f"{what}: NumPy has no bfloat16; pass dtype='bf16' to read uint16 arrays as bf16 bit patterns")
    raise InvalidArgumentError(f"{what}: unknown dtype {dtype!r} (expected bf16, fp16, fp32, a NumPy or torch dtype)")


def dtype_name(code):
    return _abi.DTYPE_NAMES.get(code, str(code))


class Operand:
    """One array seen through the C ABI: pointer, dtype, shape, strides (elements), space."""

    __slots__ = ("name", "obj", "kind", "dtype", "shape", "strides", "data", "space", "device", "writeable")

    def __init__(self, name, obj):
        self.name = name
        self.obj = obj  # keeps the memory alive while the view is in use
        if _is_numpy(obj):
            self.kind = "numpy"
            dt = obj.dtype
            if dt.name == "uint16":
                self.dtype = BF16_BITS
            elif dt.name in _NUMPY_DTYPES and dt.isnative:
                self.dtype = _NUMPY_DTYPES[dt.name]
            else:
                raise InvalidArgumentError(f"{name}: NumPy dtype {dt} is not one mla reads")
            self.shape = tuple(int(s) for s in obj.shape)
            if any(s % dt.itemsize for s in obj.strides):
                raise InvalidArgumentError(f"{name}: strides {obj.strides} are not whole elements")
            self.strides = tuple(int(s) // dt.itemsize for s in obj.strides)
            self.data = int(obj.__array_interface__["data"][0])
            self.space = _abi.MEMORY_HOST
            self.device = "cpu"
            self.writeable = bool(obj.flags.writeable)
        elif _is_torch(obj):
            self.kind = "torch"
            name_ = str(obj.dtype).replace("torch.", "")
            if name_ not in _TORCH_DTYPES:
                raise InvalidArgumentError(f"{name}: torch dtype {obj.dtype} is not one mla reads")
            self.dtype = _TORCH_DTYPES[name_]
            self.shape = tuple(int(s) for s in obj.shape)
            self.strides = tuple(int(s) for s in obj.stride())
            self.data = int(obj.data_ptr())
            self.space = _abi.MEMORY_DEVICE if obj.device.type == "cuda" else _abi.MEMORY_HOST
            if obj.device.type not in ("cpu", "cuda"):
                raise InvalidArgumentError(f"{name}: tensors on {obj.device} are not supported (cpu or cuda)")
            self.device = obj.device
            self.writeable = True
        else:
            raise InvalidArgumentError(
                f"{name}: expected a NumPy array or a torch.Tensor, got {type(obj).__name__}")
        if len(self.shape) < 1 or len(self.shape) > _abi.MAX_RANK:
            raise InvalidArgumentError(f"{name}: rank {len(self.shape)} is outside 1..{_abi.MAX_RANK}")
        # A size-1 dimension is never stepped over, so its stride is free; give it the dense
        # one so that views the caller made with unusual strides there still pass the checks.
        dense, strides = 1, list(self.strides)
        for i in range(len(self.shape) - 1, -1, -1):
            if self.shape[i] == 1:
                strides[i] = dense
            dense *= self.shape[i]
        self.strides = tuple(strides)
        if self.shape[-1] > 1 and self.strides[-1] != 1:
            raise InvalidArgumentError(
                f"{name}: the last dimension must be contiguous (stride 1), got strides {self.strides}; "
                "call .contiguous() / numpy.ascontiguousarray first")
        if any(s < 0 for s in self.strides):
            raise InvalidArgumentError(f"{name}: negative strides {self.strides} are not supported")

    def describe(self):
        d = self.dtype if isinstance(self.dtype, str) else dtype_name(self.dtype)
        return f"{d} {list(self.shape)}"

    def expect(self, dtype, shape, backend):
        """Raises InvalidArgumentError unless this operand has `dtype` and `shape`."""
        got = self.dtype
        if got == BF16_BITS and dtype == _abi.DTYPE_BF16:
            got = _abi.DTYPE_BF16  # the documented NumPy spelling of bf16
        if got == _abi.DTYPE_UINT8 and dtype == _abi.DTYPE_FP8_E4M3:
            got = _abi.DTYPE_FP8_E4M3  # NumPy (and older torch) have no fp8: uint8 bit patterns
        if got != dtype or self.shape != tuple(shape):
            hint = ""
            if self.dtype == BF16_BITS:
                hint = " (a uint16 NumPy array is read as bf16 only when the plan's dtype is bf16)"
            elif self.kind == "numpy" and dtype == _abi.DTYPE_BF16:
                hint = " (NumPy has no bfloat16: pass bf16 data as a uint16 array of bit patterns)"
            raise InvalidArgumentError(
                f"{self.name}: expected {dtype_name(dtype)} {list(shape)}, got {self.describe()}{hint}", backend)
        self.dtype = dtype

    def view(self):
        t = _abi.Tensor()
        t.data = self.data
        t.dtype = self.dtype
        t.rank = len(self.shape)
        for i, (n, s) in enumerate(zip(self.shape, self.strides)):
            t.shape[i] = n
            t.strides[i] = s
        t.space = self.space
        return t


def check_placement(operands, space, backend):
    """Every operand in the device's memory space, and device tensors on one GPU."""
    gpu = None
    for op in operands:
        if op.space != space:
            want = "host memory (a NumPy array or a CPU tensor)" if space == _abi.MEMORY_HOST \
                else "GPU memory (a CUDA tensor)"
            raise InvalidArgumentError(
                f"{op.name}: the {backend} backend needs {want}, got "
                f"{'a CUDA tensor' if op.space == _abi.MEMORY_DEVICE else op.kind + ' host memory'}", backend)
        if op.space == _abi.MEMORY_DEVICE:
            if gpu is None:
                gpu = op.device
            elif op.device != gpu:
                raise InvalidArgumentError(f"{op.name}: on {op.device}, other operands on {gpu}", backend)
    return gpu


def empty_like_kind(ref, shape, dtype_code_, is_lse=False):
    """A new output array of the same kind (and device) as `ref`."""
    if ref.kind == "numpy":
        np = sys.modules["numpy"]
        if is_lse:
            return np.empty(shape, dtype=np.float32)
        return np.empty(shape, dtype=ref.obj.dtype)
    torch = sys.modules["torch"]
    dt = torch.float32 if is_lse else ref.obj.dtype
    return torch.empty(shape, dtype=dt, device=ref.obj.device)
