"""What the CPU can do in hardware, for choices and warnings that depend on it (never on the machine a test was
written on): whether bfloat16 arithmetic is native (AVX512_BF16, AMX on x86; the BF16 extension on Arm) or
emulated.

Read from `/proc/cpuinfo` on Linux; elsewhere unknown (None), and nothing is claimed.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86 (AVX-512, AMX) and Arm (FEAT_BF16)
_warned: set[str] = set()


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of a `/proc/cpuinfo` text (x86 `flags`, Arm `Features`), from its first processor."""
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str] | None:
    """This CPU's feature flags, or None where they cannot be read (not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as stream:
            flags = parse_cpu_flags(stream.read())
    except OSError:
        return None
    return flags or None


def native_bf16() -> bool | None:
    """Whether this CPU has bfloat16 arithmetic in hardware; None when unknown."""
    flags = cpu_flags()
    return None if flags is None else bool(flags & NATIVE_BF16_FLAGS)


def warn_if_emulated_bf16(dtype_name: str, device_type: str) -> None:
    """Warn once per process when a model is loaded in bfloat16 on a CPU that emulates bfloat16 arithmetic:
    the weights take half the memory, but its matrix products run no faster than in float32."""
    if dtype_name != "bfloat16" or device_type != "cpu" or native_bf16() is not False or "bf16" in _warned:
        return
    _warned.add("bf16")
    warnings.warn(
        "bfloat16 on this CPU is emulated (it has no AVX512_BF16 or AMX): the weights take half the memory of "
        "float32, but the model runs no faster; load in float32 for speed",
        UserWarning,
        stacklevel=3,
    )
