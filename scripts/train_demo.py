"""Train the three small demo models that ship in blip_core/data/models, on a synthetic dataset.

    python scripts/train_demo.py                 # writes blip_core/data/models (asks for --force to replace)
    python scripts/train_demo.py --output DIR    # somewhere else
    python scripts/train_demo.py --scale 0.01    # a smoke run: 1% of the steps

Coloured shapes on coloured backgrounds (blip_core.demo.synthetic), the real BERT vocabulary, small
widths. The captioner trains from scratch; the question answerer starts from it and the matcher
from the answerer, as BLIP fine-tunes its tasks from one pretrained model. Everything is seeded:
the same torch version and thread count give the same bytes. About 17 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

import blip_torch
from blip_core import BlipConfig, BlipImageProcessor, BlipProcessor, BlipTokenizer
from blip_core.demo.runs import run_demo_models
from blip_core.demo.synthetic import IMAGE_SIZE, TRAIN_SEED, samples
from blip_core.demo.tasks import ANSWERER, CAPTIONER, DEMO_MODELS_DIR, MATCHER, exact_match, held_out, roc_auc
from blip_core.processing.tokenization import BUNDLED_VOCAB_FILE
from blip_core.training import caption_examples, itm_examples, vqa_examples
from blip_torch.training import train

DEMO_CONFIG = {
    "vision_config": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "image_size": IMAGE_SIZE,
        "patch_size": 10,
    },
    "text_config": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 40,
    },
    "image_text_hidden_size": 64,
}
BATCH = 64
# (steps, peak learning rate, first sample index) per model; the index ranges never overlap.
SCHEDULE = {CAPTIONER: (1000, 2e-3, 0), ANSWERER: (500, 1e-3, 10**6), MATCHER: (1000, 2e-3, 2 * 10**6)}
# Each task model starts from the one before: the answerer's question encoder already reads counts,
# colours and shapes off the image, which is what the matcher's text encoder has to do.
STARTS_FROM = {ANSWERER: CAPTIONER, MATCHER: ANSWERER}


def processor() -> BlipProcessor:
    return BlipProcessor(BlipImageProcessor(size=IMAGE_SIZE), BlipTokenizer(vocab_file=BUNDLED_VOCAB_FILE))


def caption_batches(proc: BlipProcessor, steps: int, start: int) -> Iterator[dict[str, np.ndarray]]:
    for step in range(steps):
        data = samples(TRAIN_SEED, start + step * BATCH, BATCH)
        yield caption_examples(proc, [image for image, _ in data], [scene.caption for _, scene in data])


def vqa_batches(proc: BlipProcessor, steps: int, start: int) -> Iterator[dict[str, np.ndarray]]:
    rng = np.random.default_rng([TRAIN_SEED, start])
    for step in range(steps):
        data = samples(TRAIN_SEED, start + step * BATCH, BATCH)
        asked = [scene.questions()[rng.integers(4)] for _, scene in data]
        yield vqa_examples(proc, [image for image, _ in data], [q for q, _ in asked], [a for _, a in asked])


def itm_batches(proc: BlipProcessor, steps: int, start: int) -> Iterator[dict[str, np.ndarray]]:
    """32 images per step, each with its caption and a hard negative: its caption with one attribute
    changed, the count half the time (counting is what a matcher this small learns last)."""
    rng = np.random.default_rng([TRAIN_SEED, start])
    half = BATCH // 2
    for step in range(steps):
        data = samples(TRAIN_SEED, start + step * half, half)
        captions = [scene.caption for _, scene in data]
        negatives = [scene.altered(rng, "count" if rng.random() < 0.5 else None).caption for _, scene in data]
        yield itm_examples(proc, [image for image, _ in data], captions, negatives=negatives)


def train_stage(
    name: str, model: torch.nn.Module, batches: Iterator[dict[str, np.ndarray]], steps: int, peak: float
) -> None:
    """AdamW with a one-cycle schedule (10% warm-up; a constant rate for smoke runs under 20 steps)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak, weight_decay=0.01)
    schedule = (
        torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peak, total_steps=steps, pct_start=0.1)
        if steps >= 20
        else torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
    )
    started = time.perf_counter()

    def on_step(step: int, loss: float) -> None:
        schedule.step()
        if step % 100 == 0 or step == steps - 1:
            print(
                f"  {name} step {step:4d}/{steps}  loss {loss:.4f}  {time.perf_counter() - started:6.0f}s", flush=True
            )

    train(model, batches, optimizer=optimizer, on_step=on_step)


def transfer(source_model: torch.nn.Module, model: torch.nn.Module) -> None:
    """Start a task model from an already trained one: every tensor of the same name (the vision
    tower, a text encoder, a decoder), and the decoder's BERT as text encoder where the source has
    no encoder. The heads the source lacks stay freshly initialised."""
    source = source_model.state_dict()
    mapped = {}
    for name in model.state_dict():
        if name in source:
            mapped[name] = source[name]
        elif name.startswith("text_encoder.") and "text_decoder.bert." + name.removeprefix("text_encoder.") in source:
            mapped[name] = source["text_decoder.bert." + name.removeprefix("text_encoder.")]
    missing = model.load_state_dict(mapped, strict=False).missing_keys
    origin = type(source_model).__name__
    print(f"  {type(model).__name__}: {len(mapped)} tensors from {origin}; fresh: {sorted(missing)}")


def save(model: torch.nn.Module, proc: BlipProcessor, folder: Path) -> None:
    """Float16 weights (the checkpoints ship in the package), config and processor files."""
    model.to(torch.float16).save_pretrained(folder)
    model.to(torch.float32)
    proc.save_pretrained(folder)
    (folder / "tokenizer.json").unlink(missing_ok=True)  # vocab.txt rebuilds it; saves 700 kB per model


def evaluate(models_dir: Path, count: int) -> dict[str, float]:
    held = held_out(count)
    run = run_demo_models("pt", held, models_dir)
    labels = np.concatenate([np.ones(count), np.zeros(count)])
    return {
        "caption exact match": exact_match(run.captions, [scene.caption for scene in held.scenes]),
        "VQA accuracy": exact_match(run.answers, held.answers),
        "ITM ROC-AUC": roc_auc(np.concatenate([run.match_probability[:, 0], run.match_probability[:, 1]]), labels),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=DEMO_MODELS_DIR, help="folder for the three model folders")
    parser.add_argument("--force", action="store_true", help="replace existing models in --output")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the training steps (smoke runs)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (results are reproducible per count)")
    parser.add_argument("--eval-count", type=int, default=500, help="held-out images to score at the end")
    args = parser.parse_args(argv)
    targets = [args.output / name for name in (CAPTIONER, ANSWERER, MATCHER)]
    if any(target.exists() for target in targets) and not args.force:
        print(f"error: {args.output} already holds demo models; pass --force to replace them", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    proc, config = processor(), BlipConfig(**DEMO_CONFIG)
    started = time.perf_counter()
    args.output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.output) as scratch:
        staged = Path(scratch)
        models: dict[str, torch.nn.Module] = {}
        batch_makers = {CAPTIONER: caption_batches, ANSWERER: vqa_batches, MATCHER: itm_batches}
        for seed, name in enumerate((CAPTIONER, ANSWERER, MATCHER)):
            steps, peak, start = SCHEDULE[name]
            steps = max(1, round(steps * args.scale))
            torch.manual_seed(seed)
            model = getattr(blip_torch, name)(config)
            if name in STARTS_FROM:
                transfer(models[STARTS_FROM[name]], model)
            print(f"training {name}: {steps} steps of {BATCH}", flush=True)
            train_stage(name, model, batch_makers[name](proc, steps, start), steps, peak)
            save(model, proc, staged / name)
            models[name] = model
        scores = evaluate(staged, args.eval_count)
        for target in targets:  # all three trained: only now replace what was there
            if target.exists():
                shutil.rmtree(target)
            (staged / target.name).rename(target)
    print(f"trained in {time.perf_counter() - started:.0f}s; held-out ({args.eval_count} images, PyTorch):")
    for metric, value in scores.items():
        print(f"  {metric}: {value:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
