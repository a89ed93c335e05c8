"""Loading in bfloat16 on a CPU that emulates bfloat16 arithmetic says so, once, in both frameworks; a CPU with
AVX512_BF16 or AMX, float32, and an unknown CPU get no warning. The CPU is simulated (its flags are monkeypatched),
so these run the same on AVX2-only, AVX-512 and AMX machines."""

from __future__ import annotations

import warnings

import pytest

from blip_core.modeling import cpu_features

CPUINFO_X86 = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 fma avx512f avx512_bf16 avx512_vnni\n"
CPUINFO_ARM = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n"


def test_flags_are_read_from_cpuinfo():
    assert {"avx2", "avx512_bf16"} <= cpu_features.parse_cpu_flags(CPUINFO_X86)
    assert "bf16" in cpu_features.parse_cpu_flags(CPUINFO_ARM)
    assert cpu_features.parse_cpu_flags("processor\t: 0\n") == frozenset()


def _cpu(monkeypatch, flags):
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: flags)
    monkeypatch.setattr(cpu_features, "_warned", set())


def _load(framework: str, folder, dtype: str):
    if framework == "pt":
        from blip_torch import BlipForImageTextRetrieval

        return BlipForImageTextRetrieval.from_pretrained(folder, torch_dtype=dtype)
    from blip_tf import TFBlipForImageTextRetrieval

    return TFBlipForImageTextRetrieval.from_pretrained(folder, dtype=dtype)


def _warnings(framework, folder, dtype) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _load(framework, folder, dtype)
    return [str(w.message) for w in caught if "bfloat16 on this CPU is emulated" in str(w.message)]


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_emulated_bf16_warns_once(monkeypatch, tiny_checkpoints, framework):
    _cpu(monkeypatch, frozenset({"avx2", "fma"}))
    folder = tiny_checkpoints["BlipForImageTextRetrieval"]
    first = _warnings(framework, folder, "bfloat16")
    assert len(first) == 1 and "no AVX512_BF16 or AMX" in first[0] and "float32 for speed" in first[0]
    assert _warnings(framework, folder, "bfloat16") == []  # once per process


@pytest.mark.parametrize("framework", ["pt", "tf"])
@pytest.mark.parametrize(
    ("flags", "dtype"),
    [
        (frozenset({"avx2", "avx512_bf16"}), "bfloat16"),  # AVX-512 with BF16
        (frozenset({"avx2", "amx_bf16", "amx_tile"}), "bfloat16"),  # AMX
        (frozenset({"avx2"}), "float32"),  # not bfloat16
        (None, "bfloat16"),  # flags unknown: nothing claimed
    ],
)
def test_no_warning_otherwise(monkeypatch, tiny_checkpoints, framework, flags, dtype):
    _cpu(monkeypatch, flags)
    assert _warnings(framework, tiny_checkpoints["BlipForImageTextRetrieval"], dtype) == []
