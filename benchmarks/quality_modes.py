"""Quality per precision/quantization mode on the embedded demo models' held-out scenes, in both frameworks.

For every mode (fp32, bf16, int8 weight-only decoding, bf16 + int8) it reports caption exact match, VQA accuracy
(greedy answers equal to the truth) and ITM ROC-AUC (true caption against the altered one), each next to fp32's
in the same framework, and the share of caption and answer ids equal to fp32's. A mode that loses more than
`--max-drop` points (default 2) on any of the three is flagged. The matcher has no text decoder, so int8 does not
apply to it: an int8 mode's ITM column is its dtype's alone (marked). A framework that does not offer a mode
(int8 not built there) is skipped and says why.

    python benchmarks/quality_modes.py                    # 300 held-out scenes from 1000, both frameworks
    python benchmarks/quality_modes.py --count 60 --frameworks pt
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from machine import print_description  # benchmarks/machine.py, beside this script
from quality_runs import MODES, ModeRun, ModeUnavailable, run_mode, same_rows  # benchmarks/, beside this script

from blip_core.demo.tasks import exact_match, held_out, roc_auc

NAMES = {"pt": "blip_torch", "tf": "blip_tf"}


def scores(run: ModeRun, held) -> dict[str, float]:
    """Caption exact match, VQA accuracy and ITM ROC-AUC, in points (0..100)."""
    labels = np.concatenate([np.ones(len(held.images)), np.zeros(len(held.images))])
    return {
        "caption": 100 * exact_match(run.captions, [scene.caption for scene in held.scenes]),
        "vqa": 100 * exact_match(run.answers, held.answers),
        "itm": 100 * roc_auc(np.concatenate([run.match_probability[:, 0], run.match_probability[:, 1]]), labels),
    }


def table_rows(framework: str, runs: dict[str, ModeRun | str], held, max_drop: float) -> list[str]:
    """Markdown rows of one framework: one per mode, figures next to fp32's; flagged drops."""
    base = runs["fp32"]
    if not isinstance(base, ModeRun):
        return [f"| {NAMES[framework]} | fp32 | skipped: {base} | | | | | | |"]
    reference, rows = scores(base, held), []
    for mode in MODES:
        run = runs[mode.name]
        if not isinstance(run, ModeRun):
            rows.append(f"| {NAMES[framework]} | {mode.name} | skipped: {run} | | | | | | |")
            continue
        got = scores(run, held)
        drops = [key for key in got if reference[key] - got[key] > max_drop and not (key == "itm" and mode.int8)]
        cells = [_cell(got[key], reference[key], mode.name == "fp32") for key in ("caption", "vqa", "itm")]
        if mode.int8:
            cells[2] = f"{cells[2]} [{'fp32' if mode.dtype == 'float32' else 'bf16'} only: int8 n/a, no text decoder]"
        same_captions = 100 * same_rows(run.caption_ids, base.caption_ids).mean()
        same_answers = 100 * same_rows(run.answer_ids, base.answer_ids).mean()
        itm_change = np.abs(run.match_probability - base.match_probability).max()
        flag = f"**drops > {max_drop:g} points: {', '.join(drops)}**" if drops else "ok"
        rows.append(
            f"| {NAMES[framework]} | {mode.name} | {' | '.join(cells)} | {same_captions:.1f}% | {same_answers:.1f}% "
            f"| {itm_change:.4f} | {flag} |"
        )
    return rows


def _cell(value: float, reference: float, is_reference: bool) -> str:
    change = round(value - reference, 1) + 0.0  # no "-0.0"
    return f"{value:.1f}" if is_reference else f"{value:.1f} (fp32 {reference:.1f}, {change:+.1f})"


def run_framework(framework: str, held) -> dict[str, ModeRun | str]:
    """Every mode's run in one framework, or the reason it was skipped."""
    runs: dict[str, ModeRun | str] = {}
    for mode in MODES:
        start = time.perf_counter()
        try:
            runs[mode.name] = run_mode(framework, mode, held)
        except ModeUnavailable as reason:
            runs[mode.name] = str(reason)
        except ImportError as error:  # the framework is not installed
            runs[mode.name] = f"{NAMES[framework]} not importable ({error})"
        print(f"# {NAMES[framework]} {mode.name}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300, help="held-out scenes (default 300)")
    parser.add_argument("--start", type=int, default=1000, help="first held-out scene (default 1000)")
    parser.add_argument("--frameworks", nargs="+", choices=sorted(NAMES), default=["pt", "tf"])
    parser.add_argument("--max-drop", type=float, default=2.0, help="points lost that flag a mode (default 2)")
    args = parser.parse_args(argv)
    if args.count < 1 or args.start < 0:
        parser.error("--count must be at least 1 and --start at least 0")
    print_description()  # where these figures were measured
    held = held_out(args.count, start=args.start)
    print(
        f"Demo models, held-out scenes {args.start}..{args.start + args.count - 1} ({args.count}), greedy, "
        "12 new tokens. Points: percent (ROC-AUC x 100); 'same ids' and the P(match) change: against fp32's in "
        "that framework.\n"
    )
    print(
        "| framework | mode | caption exact match | VQA accuracy | ITM ROC-AUC | same caption ids | same answer ids "
        "| ITM max abs P(match) change | quality |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for framework in args.frameworks:
        for row in table_rows(framework, run_framework(framework, held), held, args.max_drop):
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
