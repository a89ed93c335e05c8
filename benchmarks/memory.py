"""Memory of blip_torch, blip_tf and `transformers` (fp32, base size): peak RSS and RSS after each step.

Random base-size checkpoints (ViT-B/16 at 384, BERT-base text, 12 text heads) are written once, a
captioner and a retriever. Every (framework, workload) pair runs in its own process, so its peak
(`ru_maxrss`) is its own: caption batch 1 (greedy, exactly 20 new tokens), vision encoder batch 8,
ITM batch 8 (16 text tokens). Each process reports the RSS (anonymous / file-backed, from
/proc/self/status) right after `from_pretrained`, after the first run and after a second run, and the
peak; the table gives ratios against `transformers` in the same run.

    python benchmarks/memory.py --oracle-python .venv-oracle/bin/python
    python benchmarks/memory.py --only torch --workloads caption
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import print_description  # benchmarks/machine.py, beside this script

NEW_TOKENS = 20
TEXT_TOKENS = 16
FRAMEWORKS = {"blip_torch fp32": "torch", "blip_tf fp32": "tf", "transformers fp32": "transformers"}
WORKLOADS = ("caption_b1", "vision_b8", "itm_b8")
GIB = 2**30


def rss() -> dict[str, float]:
    """Current resident memory in GiB: total, anonymous, file-backed (Linux), and the peak so far."""
    found = {"peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB}
    try:
        with open("/proc/self/status", encoding="ascii") as stream:
            for line in stream:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile"):
                    found[key] = int(value.split()[0]) * 1024 / GIB
    except OSError:
        pass
    return found


def make_checkpoints(folder: Path) -> None:
    """A base-size captioner (`caption/`) and retriever (`retrieval/`), random, seeded; kept if present."""
    import torch

    from blip_core import BlipConfig
    from blip_torch import BlipForConditionalGeneration, BlipForImageTextRetrieval

    for name, cls in (("caption", BlipForConditionalGeneration), ("retrieval", BlipForImageTextRetrieval)):
        if not (folder / name / "model.safetensors").exists():
            torch.manual_seed(0)
            cls(BlipConfig(text_config={"num_attention_heads": 12})).save_pretrained(folder / name)


def inputs(batch: int):
    """(pixels (B, 3, 384, 384) float32, ids (B, 16) int64, mask) as NumPy, seeded."""
    import numpy as np

    state = np.random.RandomState(batch)
    ids = state.randint(1000, 20000, size=(batch, TEXT_TOKENS)).astype("int64")
    ids[:, 0] = 101
    return state.randn(batch, 3, 384, 384).astype("float32"), ids, np.ones_like(ids)


def load(framework: str, workload: str, folder: Path):
    """The model for a workload in a framework, and a function turning NumPy arrays into its tensors."""
    retrieval = workload == "itm_b8"
    sub = folder / ("retrieval" if retrieval else "caption")
    if framework == "tf":
        import blip_tf

        cls = blip_tf.TFBlipForImageTextRetrieval if retrieval else blip_tf.TFBlipForConditionalGeneration
        return cls.from_pretrained(sub, dtype="float32"), lambda x: x
    import torch

    if framework == "torch":
        import blip_torch as module
    else:
        import transformers as module

        module.logging.set_verbosity_error()
    cls = module.BlipForImageTextRetrieval if retrieval else module.BlipForConditionalGeneration
    return cls.from_pretrained(sub, torch_dtype=torch.float32).eval(), torch.from_numpy


def step(framework: str, workload: str, model, to_input) -> None:
    """One run of the workload."""
    if workload == "caption_b1":
        pixels, _, _ = inputs(1)
        model.generate(pixel_values=to_input(pixels), max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    elif workload == "vision_b8":
        pixels, _, _ = inputs(8)
        model.vision_model(pixel_values=to_input(pixels))
    else:
        pixels, ids, mask = inputs(8)
        model(input_ids=to_input(ids), attention_mask=to_input(mask), pixel_values=to_input(pixels), use_itm_head=True)


def worker(framework: str, workload: str, folder: Path) -> dict:
    import contextlib
    import importlib

    for module in {"torch": ("blip_torch",), "tf": ("tensorflow", "blip_tf"), "transformers": ("transformers",)}[
        framework
    ]:
        importlib.import_module(module)
    if framework != "tf":
        import torch

        torch.set_grad_enabled(False)
    import_rss = rss()
    model, to_input = load(framework, workload, folder)
    result = {"import": import_rss, "load": rss()}
    with contextlib.nullcontext():
        step(framework, workload, model, to_input)
        result["run1"] = rss()
        step(framework, workload, model, to_input)
        result["run2"] = rss()
    return result


def run_worker(framework: str, workload: str, python: str, folder: Path) -> dict | None:
    command = [python, __file__, "--worker", framework, workload, "--folder", str(folder)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode:
        print(f"{framework} {workload}: FAILED\n{out.stderr[-3000:]}", flush=True)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def cell(r: dict) -> str:
    return f"{r['VmRSS']:.2f} ({r['RssAnon']:.2f}+{r['RssFile']:.2f})"


def report(results: dict) -> None:
    print("\nGiB; RSS as total (anonymous + file-backed)")
    print(
        "| run | workload | after import | after from_pretrained | after run 1 | after run 2 | peak | peak / oracle |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (label, workload), r in results.items():
        oracle = results.get(("transformers fp32", workload))
        ratio = f"{r['run2']['peak'] / oracle['run2']['peak']:.2f}" if oracle else "-"
        cells = [cell(r["import"]), cell(r["load"]), cell(r["run1"]), cell(r["run2"]), f"{r['run2']['peak']:.2f}"]
        print(f"| {label} | {workload} | " + " | ".join(cells) + f" | {ratio} |")
    print()
    for workload in WORKLOADS:
        tf, pt = results.get(("blip_tf fp32", workload)), results.get(("blip_torch fp32", workload))
        if tf and pt:
            print(
                f"blip_tf / blip_torch peak, {workload}: {tf['run2']['peak'] / pt['run2']['peak']:.2f} (target <= 1.2)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", help="frameworks to run (substring match): torch, tf, transformers")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--oracle-python", default=sys.executable, help="interpreter with transformers==4.57.6")
    parser.add_argument("--checkpoints", type=Path, help="folder to keep the random checkpoints in (reused)")
    parser.add_argument("--worker", nargs=2, metavar=("FRAMEWORK", "WORKLOAD"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.folder)))
        return
    print_description()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.checkpoints or Path(tmp)
        make_checkpoints(folder)
        results = {}
        labels = [label for label in FRAMEWORKS if not args.only or any(word in label for word in args.only)]
        for workload in args.workloads:
            for label in labels:
                framework = FRAMEWORKS[label]
                python = args.oracle_python if framework == "transformers" else sys.executable
                run = run_worker(framework, workload, python, folder)
                if run is not None:
                    results[(label, workload)] = run
                    print(f"{label} {workload}: peak {run['run2']['peak']:.2f} GiB", flush=True)
    report(results)


if __name__ == "__main__":
    main()
