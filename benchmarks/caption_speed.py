"""Speed of every workload and mode: blip_torch, blip_tf and (when installed) `transformers`, same checkpoints.

Base-size random checkpoints are written once (`workloads.py`); each framework and mode then runs in its own
process (so peak memory is its own) on the same inputs: caption batch 1 greedy and batch 8 beam 3 (20 new
tokens), VQA batch 1 (10 tokens), the vision encoder and ITM on batch 8. Batch-1 times are the best of
`--repeats` runs after a warm-up; batch-8 ones a single run after a warm-up. The machine's description and
measured limits come first, then the times, every ratio against `transformers` float32 from the same run, and
each time's fraction of its floor (`workloads.floors`).

    python benchmarks/caption_speed.py --oracle-python .venv-oracle/bin/python   # everything
    python benchmarks/caption_speed.py --only "blip_torch bf16"                   # some workers
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import best_of, limits, print_description  # benchmarks/, beside this script
from workloads import WORKLOADS, floors, inputs_for, load, make_checkpoints, runners

WORKERS = {  # label: (framework, dtype, quantization)
    "transformers fp32": ("transformers", "float32", None),
    "blip_torch fp32": ("torch", "float32", None),
    "blip_torch bf16": ("torch", "bfloat16", None),
    "blip_torch bf16+int8": ("torch", "bfloat16", "int8"),
    "blip_torch fp32+int8": ("torch", "float32", "int8"),
    "blip_tf fp32": ("tf", "float32", None),
    "blip_tf bf16": ("tf", "bfloat16", None),
    "blip_tf bf16+int8": ("tf", "bfloat16", "int8"),
}
REFERENCE = "transformers fp32"
GOALS = [  # (what, ours, theirs, workload, bound: ours/theirs time ratio at most)
    ("fp32 caption b1 vs transformers", "blip_torch fp32", REFERENCE, "caption_b1", 0.65),
    ("bf16 caption b1 vs transformers fp32", "blip_torch bf16", REFERENCE, "caption_b1", 0.35),
    ("bf16 beam-3 b8 vs transformers fp32", "blip_torch bf16", REFERENCE, "caption_b8_beam3", 1 / 4.5),
    ("bf16+int8 caption b1 vs transformers fp32", "blip_torch bf16+int8", REFERENCE, "caption_b1", 0.30),
]


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def worker(framework: str, dtype: str, quantization: str | None, folder: Path, repeats: int, only: list[str]):
    import importlib

    start = time.perf_counter()
    importlib.import_module({"torch": "blip_torch", "tf": "blip_tf", "transformers": "transformers"}[framework])
    result: dict[str, float] = {"import_s": time.perf_counter() - start}
    start = time.perf_counter()
    models = {}
    for kind in ("caption", "vqa", "itm"):
        models[kind], to_tensor = load(framework, kind, folder, dtype, quantization)
    result.update({"load_s": time.perf_counter() - start, "rss_after_load_gib": peak_rss_gib()})
    eager = framework != "tf"
    with _no_grad(framework):
        inputs = inputs_for(to_tensor)
        raw = inputs_for(lambda x: x)
        small = dict(inputs, eight=to_tensor(raw["eight"][:2]), texts=to_tensor(raw["texts"][:2]))
        runs, warm = runners(framework, models, inputs), runners(framework, models, small)
        for name in WORKLOADS:
            if only and name not in only:
                continue
            if name.endswith("_b1"):
                start = time.perf_counter()
                runs[name]()  # the first call: for TF, tracing and XLA compilation
                result[f"{name}_first_s"] = time.perf_counter() - start
                result[name] = best_of(runs[name], repeats)
                continue
            (warm if eager else runs)[name]()  # TF compiles per shape: it warms up on the timed one
            start = time.perf_counter()
            runs[name]()
            result[name] = time.perf_counter() - start
    result["peak_rss_gib"] = peak_rss_gib()
    return result


def _no_grad(framework: str):
    if framework == "tf":
        import contextlib

        return contextlib.nullcontext()
    import torch

    return torch.no_grad()


def available(framework: str, python: str) -> bool:
    module = {"torch": "blip_torch", "tf": "blip_tf", "transformers": "transformers"}[framework]
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


def run_worker(label: str, python: str, folder: Path, args) -> dict | None:
    """One worker process; its result, or None (reported) when it fails."""
    framework, dtype, quantization = WORKERS[label]
    command = [python, __file__, "--worker", framework, dtype, quantization or "none", "--folder", str(folder)]
    command += ["--repeats", str(args.repeats)] + [arg for name in args.workload or [] for arg in ("--workload", name)]
    return run_json(label, command, {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def run_json(label: str, command: list[str], env: dict | None = None) -> dict | None:
    """Run a worker command whose last stdout line is its JSON result; print and return it (None on failure)."""
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode:
        print(f"{label}: FAILED\n{out.stderr[-3000:]}", flush=True)
        return None
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{label}: {json.dumps({k: round(v, 3) for k, v in result.items()})}", flush=True)
    return result


def merge(best: dict | None, run: dict) -> dict:
    """Best of rounds: the shortest times, the largest memory."""
    if best is None:
        return run
    return {
        key: max(best.get(key, 0), value) if "rss" in key else min(best.get(key, value), value)
        for key, value in run.items()
    }


def report(results: dict, machine: dict[str, float]) -> None:
    print("\n| run | load s | " + " | ".join(f"{name} s" for name in WORKLOADS) + " | peak RSS GiB |")
    print("|---|---|" + "---|" * len(WORKLOADS) + "---|")
    for label, r in results.items():
        cells = [f"{r[name]:.3f}" if name in r else "-" for name in WORKLOADS]
        print(f"| {label} | {r['load_s']:.2f} | " + " | ".join(cells) + f" | {r['peak_rss_gib']:.2f} |")
    reference = results.get(REFERENCE)
    if reference:
        print(f"\nTime / {REFERENCE}'s time, same run (below 1: faster):\n")
        print("| run | " + " | ".join(WORKLOADS) + " |\n|---|" + "---|" * len(WORKLOADS))
        for label, r in results.items():
            cells = [f"{r[n] / reference[n]:.2f}" if n in r and n in reference else "-" for n in WORKLOADS]
            print(f"| {label} | " + " | ".join(cells) + " |")
    print("\nFraction of the floor (floor / time; 1.0 is the machine's limit):\n")
    print("| run | " + " | ".join(WORKLOADS) + " |\n|---|" + "---|" * len(WORKLOADS))
    for label, r in results.items():
        framework, dtype, quantization = WORKERS[label]
        floor = floors(dtype, quantization, machine)
        print(f"| {label} | " + " | ".join(f"{floor[n] / r[n]:.2f}" if n in r else "-" for n in WORKLOADS) + " |")
    tf_vs_torch(results)
    goals(results)


def tf_vs_torch(results: dict) -> None:
    pairs = [(label, label.replace("blip_tf", "blip_torch")) for label in results if label.startswith("blip_tf")]
    pairs = [(tf, torch) for tf, torch in pairs if torch in results]
    if not pairs:
        return
    print("\nblip_tf time / blip_torch time, same mode (goal: at most 1.2):\n")
    print(
        "| mode | " + " | ".join(WORKLOADS) + " | first XLA call, caption b1 s |\n|---|" + "---|" * (len(WORKLOADS) + 1)
    )
    for tf, torch in pairs:
        cells = [
            f"{results[tf][n] / results[torch][n]:.2f}" if n in results[tf] and n in results[torch] else "-"
            for n in WORKLOADS
        ]
        first = results[tf].get("caption_b1_first_s", float("nan")) - results[tf].get("caption_b1", 0)
        print(f"| {tf.removeprefix('blip_tf ')} | " + " | ".join(cells) + f" | {first:.1f} |")


def goals(results: dict) -> None:
    print()
    for what, ours, theirs, name, bound in GOALS:
        if ours in results and theirs in results and name in results[ours] and name in results[theirs]:
            ratio = results[ours][name] / results[theirs][name]
            verdict = "met" if ratio <= bound else "MISSED"
            print(f"{what}: {ratio:.2f}x the time (goal at most {bound:.2f}x): {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", help="run only these workers (substring match)")
    parser.add_argument("--workload", action="append", choices=WORKLOADS, help="run only these workloads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1, help="run every worker this many times, interleaved")
    parser.add_argument(
        "--oracle-python", default=sys.executable, help="interpreter that has transformers==4.57.6 (default: this one)"
    )
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        framework, dtype, quantization = args.worker
        quantization = None if quantization == "none" else quantization
        print(json.dumps(worker(framework, dtype, quantization, args.folder, args.repeats, args.workload or [])))
        return
    print_description()  # where these figures were measured
    machine = limits()
    for name, value in machine.items():
        print(f"{name:<55} {value:8.1f}")
    results: dict[str, dict] = {}
    labels = [label for label in WORKERS if not args.only or any(word in label for word in args.only)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_checkpoints(folder)
        for round_number in range(args.rounds):
            for label in labels:
                framework = WORKERS[label][0]
                python = args.oracle_python if framework == "transformers" else sys.executable
                if not available(framework, python):
                    if round_number == 0:
                        print(f"{label}: skipped ({framework} not installed)")
                    continue
                run = run_worker(label, python, folder, args)
                if run is not None:
                    results[label] = merge(results.get(label), run)
    report(results, machine)


if __name__ == "__main__":
    main()
