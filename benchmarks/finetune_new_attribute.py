"""Teach the embedded demo captioner a word it never saw, through `blip finetune caption`, on 1 and 2 workers.

The demo captioner was trained on shapes in six colours (`blip_core.demo.synthetic`); here the shapes may also be
pink, a colour word that is in the BERT vocabulary but never in its training captions: as shipped it calls pink
shapes "purple" or "orange". The script writes, under `--work`:

- `train/`: `--train` images, half new scenes (TRAIN_SEED layouts drawn in pink), half ordinary demo scenes
  (`synthetic.samples(TRAIN_SEED, ...)`, so that the model does not forget the rest);
- `held_new/`, `held_ordinary/`: `--held-out` images each, pink scenes and ordinary scenes of HELD_OUT_SEED
  (pink layouts are taken from scene indices the ordinary held-out set does not use).

Then it fine-tunes with the real command, as a user would: `python -m blip_core.cli finetune caption ...` in one
process, and `python -m torch.distributed.run --standalone --nproc_per_node 2 -m blip_core.cli finetune ...`
(DDP, 2 gloo CPU workers, same global batch, seed and options), with `--eval-data held_new` so the command's own
held-out metric is checked against the script's. Reported for the shipped model (before) and each run (after):
exact match of greedy captions on both held-out sets, the share of pink scenes whose caption says "pink", and each
run's wall time (the whole command: start-up, training, the final evaluation and saving), the CPU seconds of its
processes, the load average when it started, and its OpenMP threads (OMP_NUM_THREADS: `--threads` for 1-process
runs, `--worker-threads` per worker). Times on a shared machine drift 20-30%, and more when it is oversubscribed
(OpenMP threads then spin while waiting for each other): compare the runs of one invocation (`--repeats` runs each
setting in alternating order and reports the median), not across invocations.

    python benchmarks/finetune_new_attribute.py                       # 2,000 images, 1 and 2 workers, minutes
    python benchmarks/finetune_new_attribute.py --threads 2 1 --repeats 2       # also 1 process x 1 thread
    python benchmarks/finetune_new_attribute.py --steps 100 --skip-2-workers
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import PIL.Image

from blip_core.demo import synthetic
from blip_core.demo.tasks import CAPTIONER, DEMO_MODELS_DIR

NEW_WORD = "pink"
NEW_RGB = (250, 140, 200)  # apart from red (215, 38, 38), purple (135, 55, 175) and white
NEW_SCENE_OFFSET = 100_000  # pink scenes use these indices of a dataset, ordinary scenes the first ones
MODEL = DEMO_MODELS_DIR / CAPTIONER


def new_sample(seed: int, index: int) -> tuple[PIL.Image.Image, synthetic.Scene]:
    """A demo scene (count, shape, background, layout) whose shapes are pink instead of their colour. The shapes
    are filled with one flat colour that the background never has, so recolouring those pixels is exact."""
    item = synthetic.scene(seed, NEW_SCENE_OFFSET + index)
    pixels = np.array(synthetic.render(item))
    pixels[(pixels == synthetic.COLORS[item.color]).all(axis=-1)] = NEW_RGB
    return PIL.Image.fromarray(pixels), replace(item, color=NEW_WORD)


def write_folder(folder: Path, pairs: list[tuple[PIL.Image.Image, synthetic.Scene]]) -> list[synthetic.Scene]:
    """Images as PNG plus captions.jsonl (the format `blip finetune` reads); returns the scenes."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "captions.jsonl", "w", encoding="utf-8") as stream:
        for number, (image, item) in enumerate(pairs):
            name = f"{number:05d}.png"
            image.save(folder / name)
            stream.write(json.dumps({"file": name, "caption": item.caption}) + "\n")
    return [item for _, item in pairs]


def build_data(work: Path, train: int, held: int) -> dict[str, Path]:
    """The training folder (new and ordinary scenes interleaved) and the two held-out folders."""
    new = [new_sample(synthetic.TRAIN_SEED, i) for i in range(train // 2)]
    ordinary = synthetic.samples(synthetic.TRAIN_SEED, 0, train - train // 2)
    mixed = [pair for both in zip(new, ordinary, strict=False) for pair in both] + ordinary[len(new) :]
    folders = {"train": work / "train", "held_new": work / "held_new", "held_ordinary": work / "held_ordinary"}
    write_folder(folders["train"], mixed)
    write_folder(folders["held_new"], [new_sample(synthetic.HELD_OUT_SEED, i) for i in range(held)])
    write_folder(folders["held_ordinary"], synthetic.samples(synthetic.HELD_OUT_SEED, 0, held))
    return folders


def read_folder(folder: Path) -> tuple[list[PIL.Image.Image], list[str]]:
    records = [json.loads(line) for line in (folder / "captions.jsonl").read_text(encoding="utf-8").splitlines()]
    return [PIL.Image.open(folder / r["file"]).convert("RGB") for r in records], [r["caption"] for r in records]


def scores(model_dir: Path, folders: dict[str, Path]) -> dict[str, float]:
    """Greedy captions of both held-out sets: exact match (%) of each, and the % of pink scenes saying "pink"."""
    import torch

    import blip_torch
    from blip_core.processing.processor import BlipProcessor

    processor = BlipProcessor.from_pretrained(model_dir)
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    result = {}
    for name in ("held_new", "held_ordinary"):
        images, references = read_folder(folders[name])
        captions = []
        for start in range(0, len(images), 64):
            inputs = processor(images=images[start : start + 64], return_tensors="pt")
            with torch.no_grad():
                ids = model.generate(**inputs, max_new_tokens=30)
            captions += processor.batch_decode(ids.numpy(), skip_special_tokens=True)
        result[name] = 100 * float(np.mean([c.strip() == r for c, r in zip(captions, references, strict=True)]))
        if name == "held_new":
            result["word"] = 100 * float(np.mean([NEW_WORD in c.split() for c in captions]))
            result["examples"] = [f"{r} -> {c}" for c, r in list(zip(captions, references, strict=True))[:3]]
    return result


def finetune(workers: int, threads: int, folders: dict[str, Path], output: Path, args: argparse.Namespace) -> dict:
    """One `blip finetune caption` run in a fresh process tree; returns its wall time, threads and log."""
    launch = [sys.executable, "-m", "blip_core.cli"]
    if workers > 1:
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={workers}",
                  "-m", "blip_core.cli"]  # fmt: skip
    command = launch + [
        "finetune", "caption", "--model", str(MODEL), "--data", str(folders["train"]),
        "--eval-data", str(folders["held_new"]), "--output-dir", str(output), "--max-steps", str(args.steps),
        "--batch-size", str(args.batch_size), "--learning-rate", str(args.learning_rate),
        "--warmup-steps", str(args.warmup_steps), "--label-smoothing", str(args.label_smoothing),
        "--save-steps", str(args.steps), "--logging-steps", "25", "--seed", str(args.seed), "--no-progress", "--force",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    print(f"$ OMP_NUM_THREADS={threads} python " + " ".join(command[1:]), file=sys.stderr, flush=True)
    load, cpu, start = os.getloadavg()[0], _children_cpu(), time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
    if done.returncode != 0:
        sys.exit(f"blip finetune failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    log = [json.loads(line) for line in (output / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    return {"seconds": seconds, "cpu": cpu, "load": load, "threads": threads, "log": log}


def _children_cpu() -> float:
    """User + system CPU seconds of the finished child processes (torchrun's workers included)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def loss_line(log: list[dict]) -> str:
    """The training loss at a few logged steps."""
    losses = [(r["step"], r["loss"]) for r in log if "loss" in r]
    picked = [losses[i] for i in sorted({0, len(losses) // 4, len(losses) // 2, len(losses) - 1})] if losses else []
    return ", ".join(f"{step}: {loss:.3f}" for step, loss in picked)


def row(name: str, workers: str, runs: list[dict], found: dict[str, float]) -> str:
    """One line of the table; with several timed runs, the median wall time with every run's in brackets."""
    timing = "- | - | -"
    if runs:
        walls = [r["seconds"] for r in runs]
        each = f" ({', '.join(f'{w:.1f}' for w in walls)})" if len(walls) > 1 else ""
        cpu, load = np.median([r["cpu"] for r in runs]), np.median([r["load"] for r in runs])
        timing = f"{np.median(walls):.1f}{each} | {cpu:.1f} | {load:.1f}"
    return (f"| {name} | {workers} | {timing} | {found['held_new']:.1f} | {found['held_ordinary']:.1f} "
            f"| {found['word']:.1f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/blip_finetune_new_attribute"), help="data and runs")
    parser.add_argument("--train", type=int, default=2000, help="training images (half new scenes)")
    parser.add_argument("--held-out", type=int, default=200, help="images in each held-out set")
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=32, help="the global batch (16 per worker on 2)")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=20)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    cores = os.cpu_count() or 1
    parser.add_argument("--threads", type=int, nargs="+", default=[cores], help="1-process runs: OMP threads each")
    parser.add_argument("--worker-threads", type=int, default=max(1, cores // 2), help="2-worker run: per worker")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per worker count, in alternating order")
    parser.add_argument("--skip-2-workers", action="store_true", help="only the 1-process run")
    args = parser.parse_args()
    if min(args.steps, args.held_out, args.repeats, args.worker_threads, *args.threads) < 1 or args.train < 2:
        parser.error("--steps, --held-out, --repeats and the threads must be positive, --train at least 2")

    folders = build_data(args.work, args.train, args.held_out)
    print(f"data: {args.train} training images (half {NEW_WORD}), {args.held_out} + {args.held_out} held out, "
          f"in {args.work}", flush=True)  # fmt: skip
    before = scores(MODEL, folders)
    plans = [(1, threads) for threads in dict.fromkeys(args.threads)]
    plans += [] if args.skip_2_workers else [(2, args.worker_threads)]
    runs: dict[tuple[int, int], list[dict]] = {plan: [] for plan in plans}
    for repeat in range(args.repeats):
        for plan in plans if repeat % 2 == 0 else plans[::-1]:
            runs[plan].append(finetune(*plan, folders, args.work / "run_{}x{}".format(*plan), args))
    after = {plan: scores(args.work / "run_{}x{}".format(*plan), folders) for plan in runs}

    print(
        f"\nsteps {args.steps}, global batch {args.batch_size}, AdamW lr {args.learning_rate:g} (cosine, warm-up "
        f"{args.warmup_steps}), label smoothing {args.label_smoothing:g}, seed {args.seed}; {os.cpu_count()} cores\n"
    )
    print(
        "| run | workers x threads | wall time (s) | CPU time (s) | load avg at start | exact match new (%) "
        f"| exact match ordinary (%) | '{NEW_WORD}' said (%) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(row("before (as shipped)", "-", [], before))
    for (workers, threads), timed in runs.items():
        print(row("after", f"{workers} x {threads}", timed, after[workers, threads]))
    median = {plan: float(np.median([r["seconds"] for r in timed])) for plan, timed in runs.items()}
    print()
    for plan in (p for p in plans if p[0] == 1 and (2, args.worker_threads) in runs):
        ratio = median[2, args.worker_threads] / median[plan]
        print(f"wall time 2 workers x {args.worker_threads} thread(s) / 1 worker x {plan[1]}: {ratio:.2f}")
    print("\nheld-out new scenes, before: " + "; ".join(before["examples"]))
    for (workers, threads), timed in runs.items():
        found = after[workers, threads]
        evals = [r for r in timed[-1]["log"] if "eval_exact_match" in r]
        command = f"{100 * evals[-1]['eval_exact_match']:.1f}" if evals else "none logged"
        print(
            f"{workers} x {threads}: training loss at step {loss_line(timed[-1]['log'])}; the command's own "
            f"eval_exact_match on the new held-out set {command} (this script: {found['held_new']:.1f})"
        )
        print("  after: " + "; ".join(found["examples"]))


if __name__ == "__main__":
    main()
