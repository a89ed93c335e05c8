"""What a benchmark ran on, and that machine's limits: CPU model and the flags that choose kernels (AVX2,
AVX-512, AVX512_BF16, VNNI, AMX), threads, library versions, the oneDNN kernels PyTorch actually runs for
bfloat16 and int8 matmuls, and measured peaks (matmul GFLOP/s per dtype, memory bandwidth).

    python benchmarks/machine.py            # the description and the limits
    python benchmarks/machine.py --no-limits

Other benchmarks print `describe()` first, so every figure says where it was measured.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time

FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")
ONEDNN_PROBE = """
import torch
x = torch.randn(64, 768)
w = torch.randn(3072, 768)
for dtype in (torch.bfloat16,):
    torch.nn.functional.linear(x.to(dtype), w.to(dtype))
"""


def cpu() -> dict[str, object]:
    """Model name and the kernel-choosing flags present (Linux /proc/cpuinfo; the platform elsewhere)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            for line in stream:
                if line.startswith("model name") and model in ("", platform.machine(), platform.processor()):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"model": model, "flags": [flag for flag in FLAGS if flag in flags], "cores": os.cpu_count()}


def versions() -> dict[str, str]:
    """Installed versions (read from package metadata: nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("numpy", "torch", "tensorflow-cpu", "tensorflow", "keras", "transformers", "onnxruntime"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def onednn_kernels() -> list[str]:
    """The oneDNN implementations PyTorch runs for a bfloat16 linear layer here (ONEDNN_VERBOSE), e.g.
    `brg_matmul:avx512_core_bf16`; empty when PyTorch does not route it through oneDNN."""
    env = {**os.environ, "ONEDNN_VERBOSE": "1", "DNNL_VERBOSE": "1"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", ONEDNN_PROBE], env=env, capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    kernels = set()
    for line in done.stdout.splitlines():  # onednn_verbose,v1,primitive,exec,cpu,<kind>,<implementation>,...
        parts = line.split(",")
        if "exec" in parts[:4] and len(parts) > parts.index("exec") + 3:
            at = parts.index("exec")
            kernels.add(f"{parts[at + 2]} {parts[at + 3]}")
    isa = re.findall(r"isa:([^,\n]+)", done.stdout)
    return sorted(kernels) + ([f"isa: {isa[0]}"] if isa else [])


def describe() -> dict[str, object]:
    """CPU, threads and versions (and, where torch is installed, its thread count and oneDNN bf16 kernels)."""
    described: dict[str, object] = {"cpu": cpu(), "versions": versions()}
    try:
        import torch

        described["torch_threads"] = torch.get_num_threads()
        described["onednn_bf16"] = onednn_kernels()
        # int8 weight-only decoding (blip_torch.quantization) runs ATen's own kernel, vectorised for this ISA
        described["aten_isa"] = torch.backends.cpu.get_cpu_capability()
    except ImportError:
        pass
    return described


def best_of(run, repeats: int = 3) -> float:
    """The fastest of `repeats` timed calls (seconds), after one untimed warm-up call."""
    run()  # warm-up (and, for TF, tracing/compilation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def limits() -> dict[str, float]:
    """Measured peaks: square and ViT-shaped matmul GFLOP/s in float32 (PyTorch's default GEMM, MKL, and oneDNN's,
    which `blip_torch` uses where it is the faster) and bfloat16, and memory bandwidth GB/s (a 256 MB copy: bytes
    read plus bytes written)."""
    import numpy as np
    import torch

    found: dict[str, float] = {}
    shapes = {"square 2048": (2048, 2048, 2048), "ViT-B (8x577 tokens, 768->3072)": (8 * 577, 768, 3072)}
    with torch.no_grad():
        for dtype in (torch.float32, torch.bfloat16):
            for name, (m, k, n) in shapes.items():
                a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
                seconds = best_of(lambda a=a, b=b: a @ b)
                found[f"matmul {str(dtype).removeprefix('torch.')} {name} GFLOP/s"] = 2 * m * k * n / seconds / 1e9
        m, k, n = shapes["ViT-B (8x577 tokens, 768->3072)"]
        a, weight = torch.randn(m, k), torch.randn(n, k)
        if hasattr(torch.ops.mkldnn, "_linear_pointwise"):
            seconds = best_of(lambda: torch.ops.mkldnn._linear_pointwise(a, weight, None, "none", [], ""))
            found["matmul float32 ViT-B, oneDNN GFLOP/s"] = 2 * m * k * n / seconds / 1e9
    source = np.ones(256 * 2**20 // 8)
    target = np.empty_like(source)
    seconds = best_of(lambda: np.copyto(target, source))
    found["memory bandwidth GB/s (copy)"] = 2 * source.nbytes / seconds / 1e9
    return found


def print_description(described: dict[str, object] | None = None) -> None:
    described = described or describe()
    processor = described["cpu"]
    print(f"CPU: {processor['model']}, {processor['cores']} cores; flags: {' '.join(processor['flags']) or 'none'}")
    if "torch_threads" in described:
        kernels = ", ".join(described["onednn_bf16"]) or "not oneDNN"
        print(f"torch threads: {described['torch_threads']}; oneDNN bf16 matmul: {kernels}")
        print(f"int8 weight-only matmul: aten._weight_int8pack_mm, ATen vectorised for {described['aten_isa']}")
    print("versions: " + ", ".join(f"{name} {version}" for name, version in described["versions"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-limits", action="store_true", help="describe the machine only")
    args = parser.parse_args()
    print_description()
    if not args.no_limits:
        for name, value in limits().items():
            print(f"{name:<55} {value:8.1f}")


if __name__ == "__main__":
    main()
