"""Write the demo models' held-out synthetic set as files `blip eval` reads, so the paper's evaluation commands run
on the embedded demo models:

    python scripts/make_demo_eval_set.py /tmp/demo-eval --count 200
    blip eval caption   --images /tmp/demo-eval/images --annotations /tmp/demo-eval/captions.json --prompt ''
    blip eval vqa       --images /tmp/demo-eval/images --annotations /tmp/demo-eval/vqa.jsonl --mode rank \
                        --answers /tmp/demo-eval/answers.txt
    blip eval retrieval --images /tmp/demo-eval/images --annotations /tmp/demo-eval/captions.json

Files: `images/held_out_<i>.png`; `captions.json` (Karpathy style: [{"image", "caption": [one true caption]}]);
`vqa.jsonl` (one question per image, its answer given by all 10 annotators, numbers as digits as in
VQA v2); `answers.txt` (every answer the synthetic questions have: counts, colours, shapes). Held-out images are
never seen in training. The demo captioner was trained without a prompt: `--prompt ''` (the paper's "a picture of "
shifts its captions).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from blip_core.demo.synthetic import COLORS, COUNTS, SHAPES
from blip_core.demo.tasks import held_out

# VQA annotations hold numbers as digits; the official accuracy normalises a predicted "two" to "2".
DIGITS = {word: str(number) for number, word in enumerate(COUNTS, start=1)}


def write_set(folder: Path, count: int, start: int = 0) -> None:
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    held = held_out(count, start)
    captions, questions = [], []
    for i, (image, scene) in enumerate(zip(held.images, held.scenes, strict=True)):
        name = f"held_out_{start + i}.png"
        image.save(images / name)
        captions.append({"image": name, "caption": [scene.caption]})
        answer = DIGITS.get(held.answers[i], held.answers[i])
        questions.append({"image": name, "question": held.questions[i], "answers": [answer] * 10})
    (folder / "captions.json").write_text(json.dumps(captions, indent=1))
    (folder / "vqa.jsonl").write_text("".join(json.dumps(row) + "\n" for row in questions))
    (folder / "answers.txt").write_text("\n".join([*COUNTS, *COLORS, *SHAPES]) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--start", type=int, default=0)
    args = parser.parse_args()
    write_set(args.folder, args.count, args.start)
    print(f"wrote {args.count} held-out images and their annotations to {args.folder}")


if __name__ == "__main__":
    main()
