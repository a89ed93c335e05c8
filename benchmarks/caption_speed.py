"""Captioning speed and memory: blip_torch, blip_tf and (when installed) `transformers`, same checkpoint.

A random checkpoint with the Hub's base sizes (ViT-B/16 at 384, BERT-base
decoder, 12 text heads) is written once; each framework then runs in its own
process (so peak memory is its own): load, caption batch 1 greedy and batch 8
beam 3, exactly 20 new tokens each (EOS disabled by min_new_tokens), on the
same pixels. Times are the best of `--repeats` runs after a warm-up.

    python benchmarks/caption_speed.py                 # everything available
    python benchmarks/caption_speed.py --only torch    # one worker
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

from machine import best_of, print_description  # benchmarks/machine.py, beside this script

NEW_TOKENS = 20
WORKERS = {
    "blip_torch fp32": ("torch", "float32"),
    "blip_torch bf16": ("torch", "bfloat16"),
    "blip_tf fp32": ("tf", "float32"),
    "transformers fp32": ("transformers", "float32"),
    "transformers bf16": ("transformers", "bfloat16"),
}


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def make_checkpoint(folder: Path) -> None:
    import torch

    from blip_core import BlipConfig
    from blip_torch import BlipForConditionalGeneration

    torch.manual_seed(0)
    BlipForConditionalGeneration(BlipConfig(text_config={"num_attention_heads": 12})).save_pretrained(folder)


def pixels(batch: int):
    import numpy as np

    return np.random.RandomState(batch).randn(batch, 3, 384, 384).astype("float32")




def load(framework: str, dtype: str, folder: Path):
    """(model, to_input) for a framework; to_input turns NumPy pixels into its tensors."""
    if framework == "torch":
        import torch

        from blip_torch import BlipForConditionalGeneration

        model = BlipForConditionalGeneration.from_pretrained(folder, torch_dtype=getattr(torch, dtype))
        return model, lambda x: torch.from_numpy(x).to(getattr(torch, dtype))
    if framework == "tf":
        from blip_tf import TFBlipForConditionalGeneration

        return TFBlipForConditionalGeneration.from_pretrained(folder, dtype=dtype), lambda x: x
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    model = transformers.BlipForConditionalGeneration.from_pretrained(folder, torch_dtype=getattr(torch, dtype)).eval()
    return model, lambda x: torch.from_numpy(x).to(getattr(torch, dtype))


def import_framework(framework: str) -> None:
    import importlib

    for module in {
        "torch": ("torch", "blip_torch"),
        "tf": ("tensorflow", "blip_tf"),
        "transformers": ("torch", "transformers"),
    }[framework]:
        importlib.import_module(module)


def worker(framework: str, dtype: str, folder: Path, repeats: int, beam: bool) -> dict:
    start = time.perf_counter()
    import_framework(framework)
    result = {"import_s": time.perf_counter() - start}
    start = time.perf_counter()
    model, to_input = load(framework, dtype, folder)
    result.update({"load_s": time.perf_counter() - start, "rss_after_load_gib": peak_rss_gib()})
    lengths = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS}
    no_grad = _no_grad(framework)
    with no_grad():
        one = to_input(pixels(1))
        ids = model.generate(pixel_values=one, **lengths)
        result["batch1_tokens"] = int(ids.shape[-1])
        result["batch1_greedy_s"] = best_of(lambda: model.generate(pixel_values=one, **lengths), repeats)
        if beam:
            eight = to_input(pixels(8))
            small = to_input(pixels(2))
            beam_run = lambda x: model.generate(pixel_values=x, num_beams=3, **lengths)  # noqa: E731
            # Warm-up: TF compiles one XLA program per shape, so it warms up on the timed shape itself;
            # the eager frameworks warm up on a smaller batch (the batch-8 run is long).
            beam_run(eight if framework == "tf" else small)
            start = time.perf_counter()
            beam_run(eight)
            result["batch8_beam3_s"] = time.perf_counter() - start
            result["batch8_beam3_img_per_s"] = 8 / result["batch8_beam3_s"]
    result["peak_rss_gib"] = peak_rss_gib()
    return result


def _no_grad(framework: str):
    if framework == "tf":
        import contextlib

        return contextlib.nullcontext
    import torch

    return torch.no_grad


def available(framework: str, python: str) -> bool:
    module = {"torch": "blip_torch", "tf": "blip_tf", "transformers": "transformers"}[framework]
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--only", action="append", help="run only these workers (substring match), e.g. torch, 'tf fp32'"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every worker this many times, interleaved, and keep the best (a shared machine drifts)",
    )
    parser.add_argument("--no-beam", action="store_true", help="skip the batch-8 beam-3 runs")
    parser.add_argument(
        "--oracle-python", default=sys.executable, help="interpreter that has transformers==4.57.6 (default: this one)"
    )
    parser.add_argument("--worker", nargs=2, metavar=("FRAMEWORK", "DTYPE"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.folder, args.repeats, not args.no_beam)))
        return
    print_description()  # where these figures were measured
    results: dict[str, dict] = {}
    labels = [label for label in WORKERS if not args.only or any(word in label for word in args.only)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_checkpoint(folder)
        for round_number in range(args.rounds):
            for label in labels:
                framework, dtype = WORKERS[label]
                python = args.oracle_python if framework == "transformers" else sys.executable
                if not available(framework, python):
                    if round_number == 0:
                        print(f"{label}: skipped ({framework} not installed)")
                    continue
                run = run_worker(label, framework, dtype, python, folder, args)
                if run is not None:
                    results[label] = merge(results.get(label), run)
    report(results)


def merge(best: dict | None, run: dict) -> dict:
    """Best of rounds: the shortest times, the highest throughput, the largest memory."""
    if best is None:
        return run
    merged = {}
    for key, value in run.items():
        if key not in best:
            merged[key] = value
        elif key.endswith("_per_s"):
            merged[key] = max(best[key], value)
        elif "rss" in key:
            merged[key] = max(best[key], value)
        else:
            merged[key] = min(best[key], value)
    return merged


def run_worker(label: str, framework: str, dtype: str, python: str, folder: Path, args) -> dict | None:
    """One worker process; its result, or None (reported) when it fails."""
    command = [
        python,
        __file__,
        "--worker",
        framework,
        dtype,
        "--folder",
        str(folder),
        "--repeats",
        str(args.repeats),
    ]
    if args.no_beam or dtype == "bfloat16":
        command.append("--no-beam")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode:
        print(f"{label}: FAILED\n{out.stderr[-3000:]}")
        return None
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{label}: {json.dumps({k: round(v, 3) for k, v in result.items()})}", flush=True)
    return result


def report(results: dict) -> None:
    print("\n| run | import s | load s | batch-1 greedy s | batch-8 beam-3 img/s | peak RSS GiB |")
    print("|---|---|---|---|---|---|")
    for label, r in results.items():
        beam = f"{r['batch8_beam3_img_per_s']:.3f}" if "batch8_beam3_img_per_s" in r else "-"
        cells = [f"{r['import_s']:.2f}", f"{r['load_s']:.2f}", f"{r['batch1_greedy_s']:.3f}"]
        cells += [beam, f"{r['peak_rss_gib']:.2f}"]
        print(f"| {label} | " + " | ".join(cells) + " |")
    ratios = [
        (
            "blip_torch fp32 batch-1 time / transformers fp32",
            "blip_torch fp32",
            "transformers fp32",
            "batch1_greedy_s",
            "<= 0.65",
        ),
        (
            "blip_torch bf16 batch-1 time / transformers fp32",
            "blip_torch bf16",
            "transformers fp32",
            "batch1_greedy_s",
            "<= 0.3",
        ),
        (
            "blip_torch fp32 batch-8 beam-3 img/s / transformers",
            "blip_torch fp32",
            "transformers fp32",
            "batch8_beam3_img_per_s",
            ">= 3",
        ),
        ("blip_tf fp32 batch-1 time / blip_torch fp32", "blip_tf fp32", "blip_torch fp32", "batch1_greedy_s", "<= 1.2"),
        (
            "blip_tf fp32 batch-8 beam-3 time / blip_torch",
            "blip_tf fp32",
            "blip_torch fp32",
            "batch8_beam3_s",
            "<= 1.3",
        ),
        ("blip_tf load time s", "blip_tf fp32", None, "load_s", "<= 3"),
        ("blip_tf peak RSS / blip_torch", "blip_tf fp32", "blip_torch fp32", "peak_rss_gib", "<= 1.3"),
    ]
    print()
    for title, ours, theirs, key, target in ratios:
        if (
            ours not in results
            or key not in results[ours]
            or (theirs and (theirs not in results or key not in results[theirs]))
        ):
            continue
        value = results[ours][key] / results[theirs][key] if theirs else results[ours][key]
        print(f"{title}: {value:.2f} (target {target})")


if __name__ == "__main__":
    main()
