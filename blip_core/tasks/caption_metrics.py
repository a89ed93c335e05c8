"""Caption metrics as the COCO caption evaluation computes them: BLEU-4 and CIDEr(-D) through `pycocoevalcap`'s
scorers, on text tokenised the way its PTB tokenizer does, plus exact match; and the reference files they read.

`pycocoevalcap`'s own tokenizer runs Stanford CoreNLP's PTBTokenizer in Java (`-preserveLines -lowerCase`, then
drops punctuation tokens). No Java is needed here: `ptb_tokenize` follows the same rules in Python: lower case,
contractions split (`don't` -> `do n't`, `dog's` -> `dog 's`), punctuation split off and the tokens the COCO
evaluation removes (`. , ? ! : ; - -- ...`, quotes, round and curly brackets) dropped; words joined by hyphens or
slashes and numbers such as `3.5` stay one token. Known differences from the Java tokenizer: square brackets are
dropped (PTB keeps them as `-lsb-`/`-rsb-`), abbreviations keep no trailing period (`st.` -> `st`), and rarer PTB
rules (`cannot`, `gonna`, Unicode quotes beyond the common ones) are approximated. On plain captions the tokens
are the same.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

INSTALL_EVAL = "pip install 'blip-dual[eval]'"
_REMOVED = {"''", "'", "``", "`", '"', ".", "?", "!", ",", ":", "-", "--", "...", ";", "(", ")", "{", "}", "[", "]"}
_SPLIT_BEFORE = re.compile(r"(?<=\w)(n't|'s|'re|'ve|'m|'ll|'d)\b")
_TOKEN = re.compile(r"n't|'(?:s|re|ve|m|ll|d)\b|\d+(?:[.,:]\d+)+|\w+(?:[-/&'.]\w+)*|\.\.\.|--|\S")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "--"})


def ptb_tokenize(text: str) -> str:
    """`text` as the COCO caption evaluation sees it: lower-cased PTB tokens without punctuation, space-joined."""
    if not isinstance(text, str):
        raise TypeError(f"a caption must be a string, got {type(text).__name__}")
    text = text.replace("\n", " ").translate(_QUOTES).lower()
    text = re.sub(r"\bcannot\b", "can not", text)
    text = _SPLIT_BEFORE.sub(r" \1", text)
    return " ".join(token for token in _TOKEN.findall(text) if token not in _REMOVED)


def _scorers() -> tuple[Any, Any]:
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
    except ImportError as err:
        raise ImportError(f"BLEU and CIDEr need pycocoevalcap: {INSTALL_EVAL}") from err
    return Bleu(4), Cider()


def caption_scores(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """BLEU-1..4, CIDEr and exact match of `predictions` (image -> caption) against `references` (image -> the
    human captions), over the images of `predictions`, as fractions (COCO's scale: CIDEr 1.0 = 100 in papers).

    Exact match: the share of images whose tokenised caption equals one of its tokenised references.
    Raises ValueError when an image has no reference or nothing is given, ImportError without pycocoevalcap.
    """
    if not predictions:
        raise ValueError("no captions to score")
    missing = sorted(set(predictions) - set(references))
    if missing:
        raise ValueError(f"{len(missing)} captioned images have no reference caption, e.g. {missing[:3]}")
    empty = [key for key in predictions if not references[key]]
    if empty:
        raise ValueError(f"{len(empty)} images have an empty reference list, e.g. {empty[:3]}")
    guesses = {key: [ptb_tokenize(caption)] for key, caption in predictions.items()}
    truths = {key: [ptb_tokenize(text) for text in references[key]] for key in predictions}
    bleu, cider = _scorers()
    with contextlib.redirect_stdout(io.StringIO()):  # the BLEU scorer prints its counts
        bleu_scores, _ = bleu.compute_score(truths, guesses)
        cider_score, _ = cider.compute_score(truths, guesses)
    matches = [guesses[key][0] in truths[key] for key in predictions]
    scores = {f"bleu_{n}": float(value) for n, value in enumerate(bleu_scores, start=1)}
    return {**scores, "cider": float(cider_score), "exact_match": sum(matches) / len(matches)}


def read_caption_references(path: str | Path) -> dict[str, list[str]]:
    """image (a path as the file names it) -> reference captions, from a COCO Karpathy-style list
    `[{"image": "val2014/x.jpg", "caption": ["...", ...]}]` (a caption may be one string; entries of the same
    image add up) or a COCO captions file `{"images": [{"id", "file_name"}], "annotations": [{"image_id",
    "caption"}]}`. Raises OSError for an unreadable file, ValueError naming the file for any other shape."""
    data = _read_json(Path(path))
    if isinstance(data, dict) and "annotations" in data:
        return _coco_references(data, path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of {{'image', 'caption'}} or a COCO captions file")
    references: dict[str, list[str]] = {}
    for number, entry in enumerate(data):
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str) or "caption" not in entry:
            raise ValueError(f"{path}: entry {number} is not {{'image': str, 'caption': str or [str]}}: {entry!r:.80}")
        captions = [entry["caption"]] if isinstance(entry["caption"], str) else entry["caption"]
        if not isinstance(captions, list) or not all(isinstance(text, str) for text in captions):
            raise ValueError(f"{path}: entry {number}'s caption is not a string or a list of strings")
        references.setdefault(entry["image"], []).extend(captions)
    return references


def _read_json(path: Path) -> Any:
    try:
        with path.open("rb") as file:
            return json.load(file)
    except OSError as err:
        raise OSError(f"cannot read the annotations {path}: {err.strerror or err}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"the annotations {path} are not JSON: {err}") from None


def _coco_references(data: dict[str, Any], path: str | Path) -> dict[str, list[str]]:
    try:
        names = {image["id"]: image["file_name"] for image in data.get("images", [])}
        references: dict[str, list[str]] = {name: [] for name in names.values()}
        for note in data["annotations"]:
            references[names[note["image_id"]]].append(str(note["caption"]))
    except (KeyError, TypeError) as err:
        raise ValueError(
            f"{path}: not a COCO captions file (images with id and file_name, annotations with "
            f"image_id and caption): {err!r}"
        ) from err
    return references


def match_references(images: Sequence[str], references: Mapping[str, list[str]]) -> dict[str, str]:
    """image (relative path) -> its key in `references`: the same relative path, else the only reference whose
    file name is the image's. Images without one are left out."""
    by_name: dict[str, list[str]] = {}
    for key in references:
        by_name.setdefault(Path(key).name, []).append(key)
    found = {}
    for image in images:
        if image in references:
            found[image] = image
        elif len(by_name.get(Path(image).name, [])) == 1:
            found[image] = by_name[Path(image).name][0]
    return found


def captions_jsonl(records: Sequence[Mapping[str, Any]]) -> str:
    """JSON lines of {"image", "caption"} records."""
    return "".join(json.dumps(dict(record), ensure_ascii=False) + "\n" for record in records)
