"""Captioning speed of ONNX Runtime exports (float32, int8) next to blip_torch and `transformers`, same checkpoint.

The base-size random checkpoints of `workloads.py` are written once; the captioner is exported with
`blip-convert to-onnx` (float32) and quantized with each int8 scheme of `blip_conversion.onnx_quantize` (its
default graphs). Every run is its own process, interleaved over `--rounds` (best of rounds kept): caption batch
1 greedy and batch 8 beam 3, exactly 20 new tokens. blip_torch and `transformers` run through
`caption_speed.py`'s worker; ONNX Runtime through this script's. Ratios are against `transformers` float32
from the same run. `--profile` adds ONNX Runtime's per-graph times (and the host loop's) for both workloads.

    python benchmarks/onnx_speed.py --oracle-python .venv-oracle/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from caption_speed import REFERENCE, peak_rss_gib, run_json, run_worker  # benchmarks/, beside this script
from machine import best_of, print_description  # benchmarks/, beside this script
from workloads import NEW_TOKENS, make_checkpoints, pixels

TIMED = ("caption_b1", "caption_b8_beam3")
SCHEMES = ("dynamic", "weight8")
TORCH_RUNS = (REFERENCE, "blip_torch fp32")
FLOAT_RUN = "ONNX Runtime fp32"
GOALS = {FLOAT_RUN: 0.5, **{f"ONNX Runtime int8 ({scheme})": 0.35 for scheme in SCHEMES}}


def onnx_worker(folder: Path, repeats: int) -> dict[str, float]:
    """Load an exported captioner and time both workloads as `caption_speed.worker` does."""
    start = time.perf_counter()
    from blip_onnx import OnnxBlipForConditionalGeneration

    model = OnnxBlipForConditionalGeneration.from_pretrained(folder)
    result = {"load_s": time.perf_counter() - start, "rss_after_load_gib": peak_rss_gib()}
    lengths = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS}
    one, eight = pixels(1), pixels(8)
    result["caption_b1"] = best_of(lambda: model.generate(one, **lengths), repeats)
    model.generate(eight[:2], num_beams=3, **lengths)  # warm-up
    start = time.perf_counter()
    model.generate(eight, num_beams=3, **lengths)
    result["caption_b8_beam3"] = time.perf_counter() - start
    result["peak_rss_gib"] = peak_rss_gib()
    return result


def profile(folder: Path, batch: int, beams: int) -> dict[str, float]:
    """Seconds per graph (summed over calls, with each graph's slowest ops) for one caption of `batch` images
    with `beams` beams, from ONNX Runtime's profiler (fresh sessions: their first calls included); "host" is the
    rest of the wall time (the NumPy generation loop, cache copies)."""
    import onnxruntime

    from blip_onnx import OnnxBlipForConditionalGeneration

    model = OnnxBlipForConditionalGeneration.from_pretrained(folder)
    kwargs = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS, "num_beams": beams}
    model.generate(pixels(batch), **kwargs)  # warm-up
    for name, graph in model.graphs.items():
        options = onnxruntime.SessionOptions()
        options.enable_profiling, options.profile_file_prefix = True, str(folder / f"profile_{name}")
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        graph.session = onnxruntime.InferenceSession(str(graph.path), options, providers=["CPUExecutionProvider"])
    start = time.perf_counter()
    model.generate(pixels(batch), **kwargs)
    totals = {"wall": time.perf_counter() - start}
    for name, graph in model.graphs.items():
        events = [e for e in json.loads(Path(graph.session.end_profiling()).read_text()) if e.get("dur")]
        totals[name] = sum(e["dur"] for e in events if e.get("name") == "model_run") / 1e6
        kinds: dict[str, float] = {}
        for event in events:
            op = event.get("args", {}).get("op_name")
            if event.get("cat") == "Node" and op:
                kinds[op] = kinds.get(op, 0.0) + event["dur"] / 1e6
        for op, seconds in sorted(kinds.items(), key=lambda item: -item[1])[:4]:
            totals[f"  {name} {op}"] = seconds
    totals["host"] = totals["wall"] - sum(totals[name] for name in model.graphs)
    return totals


def run_onnx(label: str, folder: Path, repeats: int) -> dict | None:
    return run_json(label, [sys.executable, __file__, "--onnx-worker", str(folder), "--repeats", str(repeats)])


def exports(checkpoints: Path, root: Path, schemes: list[str]) -> dict[str, Path]:
    """The float32 export of the base captioner and one copy per int8 scheme (its default graphs)."""
    from blip_conversion.onnx_export import export_onnx
    from blip_conversion.onnx_quantize import quantize_folder
    from blip_onnx.layout import MANIFEST

    base, _ = export_onnx(checkpoints / "caption", root / "fp32", force=True)
    folders = {FLOAT_RUN: base}
    for scheme in schemes:
        target = root / scheme
        shutil.copytree(base, target)
        manifest = json.loads((target / MANIFEST).read_text(encoding="utf-8"))
        manifest["graphs"] = quantize_folder(target, manifest["graphs"], "caption", scheme=scheme)
        (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        folders[f"ONNX Runtime int8 ({scheme})"] = target
    return folders


def prepare(root: Path, schemes: list[str]) -> dict[str, Path]:
    """Checkpoints and exports, written by a child process: the workers this process starts then do not
    inherit its peak memory (Linux keeps `ru_maxrss` across exec)."""
    command = [sys.executable, __file__, "--prepare", str(root), "--schemes", *schemes]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"preparing the checkpoints and exports failed:\n{out.stderr[-3000:]}")
    return {label: Path(folder) for label, folder in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def report(results: dict[str, dict]) -> None:
    print("\n| run | load s | " + " | ".join(f"{name} s" for name in TIMED) + " | peak RSS GiB |")
    print("|---|---|" + "---|" * len(TIMED) + "---|")
    for label, r in results.items():
        cells = " | ".join(f"{r[name]:.3f}" if name in r else "-" for name in TIMED)
        print(f"| {label} | {r['load_s']:.2f} | {cells} | {r['peak_rss_gib']:.2f} |")
    reference = results.get(REFERENCE)
    if not reference:
        print(f"\n({REFERENCE} did not run: no ratios)")
        return
    print(f"\nTime / {REFERENCE}'s time, same run (below 1: faster):\n")
    print("| run | " + " | ".join(TIMED) + " | goal |\n|---|" + "---|" * (len(TIMED) + 1))
    for label, r in results.items():
        ratios = [r[n] / reference[n] for n in TIMED if n in r and n in reference]
        goal = GOALS.get(label)
        verdict = (
            "-" if goal is None or not ratios else f"at most {goal}: " + ("met" if max(ratios) <= goal else "MISSED")
        )
        print(f"| {label} | " + " | ".join(f"{ratio:.2f}" for ratio in ratios) + f" | {verdict} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="run every worker this many times, interleaved")
    parser.add_argument("--oracle-python", default=sys.executable, help="interpreter with transformers==4.57.6")
    parser.add_argument("--profile", action="store_true", help="print ONNX Runtime's per-graph times")
    parser.add_argument("--schemes", nargs="*", choices=SCHEMES, default=["dynamic"], help="int8 schemes to time")
    parser.add_argument("--onnx-worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.onnx_worker:
        print(json.dumps(onnx_worker(args.onnx_worker, args.repeats)))
        return
    if args.prepare:
        make_checkpoints(args.prepare / "checkpoints")
        folders = exports(args.prepare / "checkpoints", args.prepare / "onnx", args.schemes)
        print(json.dumps({label: str(folder) for label, folder in folders.items()}))
        return
    print_description()
    args.workload = list(TIMED)  # what caption_speed's run_worker passes on
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folders = prepare(root, args.schemes)
        for _ in range(args.rounds):
            for label in TORCH_RUNS:
                python = args.oracle_python if label == REFERENCE else sys.executable
                run = run_worker(label, python, root / "checkpoints", args)
                results[label] = _best(results.get(label), run)
            for label, folder in folders.items():
                results[label] = _best(results.get(label), run_onnx(label, folder, args.repeats))
        if args.profile:
            for label, folder in folders.items():
                for batch, beams in ((1, 1), (8, 3)):
                    print(f"\n{label}, batch {batch}, {beams} beam(s): seconds per graph (and its slowest ops):")
                    for name, seconds in profile(folder, batch, beams).items():
                        print(f"  {name:<40} {seconds:.4f}")
    report({label: r for label, r in results.items() if r})


def _best(best: dict | None, run: dict | None) -> dict | None:
    if run is None or best is None:
        return best or run
    return {
        key: max(best[key], value) if "rss" in key else min(best.get(key, value), value) for key, value in run.items()
    }


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

if __name__ == "__main__":
    main()
