"""Quality of int8 ONNX exports on the embedded demo models' held-out scenes, next to float32 and blip_torch.

The three demo models are exported once (`blip-convert to-onnx`, float32); each variant then copies those
folders and quantizes some graphs (`blip_conversion.onnx_quantize`) with one scheme ("dynamic": ONNX Runtime's
dynamic quantization; "weight8": weight-only 8-bit MatMulNBits). Variants by graph group:

- vision: the vision encoder (caption, VQA) / image encoder (ITM);
- text: the decoder and its cross keys/values graph (+ question encoder for VQA) / text encoder and ITM graph;
- default: what `--int8` quantizes (`onnx_quantize.QUANTIZED_GRAPHS`: every graph).

Reported: caption exact match, VQA accuracy, ITM ROC-AUC (as `quality_modes.py`), the share of caption and
answer ids equal to the ONNX float32 export's, and the mean and largest ITM P(match) change (the demo set is
easy: every run scores near 100, so the P(match) change is the sensitive figure).

    python benchmarks/onnx_quality.py                  # 300 held-out scenes from 1000
    python benchmarks/onnx_quality.py --count 60 --variants "dynamic default"
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import print_description  # benchmarks/, beside this script
from quality_modes import scores  # benchmarks/, beside this script
from quality_runs import MODES, ModeRun, run_mode, same_rows, trim  # benchmarks/, beside this script

from blip_core.demo.tasks import ANSWERER, CAPTIONER, DEMO_MODELS_DIR, MATCHER, HeldOut, held_out
from blip_core.processing.processor import BlipProcessor

TASKS = {CAPTIONER: "caption", ANSWERER: "vqa", MATCHER: "itm"}
GROUPS = {  # group: {task: graphs}
    "vision": {"caption": ("vision_encoder",), "vqa": ("vision_encoder",), "itm": ("image_encoder",)},
    "text": {
        "caption": ("decoder_cross", "decoder"),
        "vqa": ("question_encoder", "decoder_cross", "decoder"),
        "itm": ("text_encoder", "itm"),
    },
    "default": None,  # onnx_quantize.QUANTIZED_GRAPHS
}
VARIANTS = [f"{scheme} {group}" for scheme in ("dynamic", "weight8") for group in GROUPS]


def export_float(models_dir: Path, root: Path) -> dict[str, Path]:
    """The float32 export of each demo model, under root/fp32/<class>."""
    from blip_conversion.onnx_export import export_onnx

    folders = {}
    for name in TASKS:
        folders[name], _ = export_onnx(models_dir / name, root / "fp32" / name, force=True)
    return folders


def make_variant(float_folders: dict[str, Path], root: Path, variant: str) -> dict[str, Path]:
    """Copies of the float32 folders with the variant's graphs quantized (manifest updated)."""
    from blip_conversion.onnx_quantize import quantize_folder
    from blip_onnx.layout import MANIFEST

    scheme, group = variant.split()
    folders = {}
    for name, source in float_folders.items():
        task = TASKS[name]
        target = root / variant.replace(" ", "_") / name
        shutil.copytree(source, target, dirs_exist_ok=True)
        manifest = json.loads((target / MANIFEST).read_text(encoding="utf-8"))
        chosen = None if GROUPS[group] is None else GROUPS[group][task]
        manifest["graphs"] = quantize_folder(target, manifest["graphs"], task, chosen, scheme)
        (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        folders[name] = target
    return folders


def run_onnx(folders: dict[str, Path], held: HeldOut, max_new_tokens: int = 12) -> ModeRun:
    """Caption, answer (greedy) and match `held` with the exported demo models in ONNX Runtime."""
    import blip_onnx

    processor = BlipProcessor.from_pretrained(DEMO_MODELS_DIR / CAPTIONER)
    pixels = processor(images=held.images, return_tensors="np")["pixel_values"]
    question = processor(text=held.questions, padding=True, return_tensors="np")
    captioner = blip_onnx.OnnxBlipForConditionalGeneration.from_pretrained(folders[CAPTIONER])
    caption_ids = trim(captioner.generate(pixels, max_new_tokens=max_new_tokens))
    answerer = blip_onnx.OnnxBlipForQuestionAnswering.from_pretrained(folders[ANSWERER])
    answer_ids = answerer.generate(
        question["input_ids"], pixels, attention_mask=question["attention_mask"], max_new_tokens=max_new_tokens
    )
    answer_ids = trim(answer_ids)
    matcher = blip_onnx.OnnxBlipForImageTextRetrieval.from_pretrained(folders[MATCHER])
    texts = [scene.caption for scene in held.scenes] + held.negatives
    pairs = processor(text=texts, padding=True, return_tensors="np")
    logits = matcher(
        pairs["input_ids"], np.concatenate([pixels, pixels]), attention_mask=pairs["attention_mask"]
    ).itm_score.astype(np.float64)
    probability = np.exp(logits - logits.max(-1, keepdims=True))
    probability = (probability / probability.sum(-1, keepdims=True))[:, 1]
    count = len(held.images)
    return ModeRun(
        captions=processor.batch_decode(caption_ids, skip_special_tokens=True),
        caption_ids=caption_ids,
        answers=processor.batch_decode(answer_ids, skip_special_tokens=True),
        answer_ids=answer_ids,
        match_probability=np.stack([probability[:count], probability[count:]], axis=1),
    )


def row(label: str, run: ModeRun, base: ModeRun, held: HeldOut, max_drop: float) -> str:
    """A markdown row: scores (change against the ONNX float32 export), same ids, P(match) change, verdict."""
    got, reference = scores(run, held), scores(base, held)
    cells = [f"{got[key]:.2f} ({got[key] - reference[key] + 0.0:+.2f})" for key in ("caption", "vqa", "itm")]
    drops = [key for key in got if reference[key] - got[key] > max_drop]
    same_captions = 100 * same_rows(run.caption_ids, base.caption_ids).mean()
    same_answers = 100 * same_rows(run.answer_ids, base.answer_ids).mean()
    change = np.abs(run.match_probability - base.match_probability)
    verdict = f"**drops > {max_drop:g} points: {', '.join(drops)}**" if drops else "ok"
    same = f"{same_captions:.1f}% | {same_answers:.1f}%"
    return f"| {label} | {' | '.join(cells)} | {same} | {change.mean():.4f} / {change.max():.4f} | {verdict} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300, help="held-out scenes (default 300)")
    parser.add_argument("--start", type=int, default=1000, help="first held-out scene (default 1000)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=VARIANTS)
    parser.add_argument("--max-drop", type=float, default=2.0, help="points lost that flag a variant (default 2)")
    args = parser.parse_args(argv)
    if args.count < 1 or args.start < 0:
        parser.error("--count must be at least 1 and --start at least 0")
    print_description()
    held = held_out(args.count, start=args.start)
    print(
        f"\nDemo models, held-out scenes {args.start}..{args.start + args.count - 1}, greedy, 12 new tokens. "
        "Points: percent (ROC-AUC x 100); (change) against the ONNX float32 export; same ids and the P(match) "
        "change against it too.\n"
    )
    print(
        "| run | caption exact match | VQA accuracy | ITM ROC-AUC | same caption ids | same answer ids "
        "| ITM P(match) change, mean / max | quality |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        float_folders = export_float(DEMO_MODELS_DIR, root)
        base = run_onnx(float_folders, held)
        print(row("blip_torch fp32", run_mode("pt", MODES[0], held), base, held, args.max_drop), flush=True)
        print(row("ONNX fp32", base, base, held, args.max_drop), flush=True)
        for variant in args.variants:
            start = time.perf_counter()
            run = run_onnx(make_variant(float_folders, root, variant), held)
            print(row(f"ONNX int8 {variant}", run, base, held, args.max_drop), flush=True)
            print(f"# {variant}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
