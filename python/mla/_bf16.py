"""bf16 for NumPy, which has no such dtype: a bf16 array is a uint16 array of bit patterns."""
import sys


def float32_to_bf16(x):
    """NumPy float array -> uint16 bf16 bit patterns (round to nearest even; NaN stays NaN)."""
    np = sys.modules.get("numpy") or __import__("numpy")
    f = np.ascontiguousarray(x, dtype=np.float32)
    bits = f.view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    # Rounding can carry a NaN's payload into Inf; keep NaNs quiet NaNs.
    return np.where(np.isnan(f), np.uint16(0x7FC0), rounded)


def bf16_to_float32(x):
    """uint16 bf16 bit patterns -> float32 (exact)."""
    np = sys.modules.get("numpy") or __import__("numpy")
    u = np.ascontiguousarray(x, dtype=np.uint16)
    return (u.astype(np.uint32) << 16).view(np.float32)
