"""The standard VQA accuracy (VQA v1/v2 evaluation, as its official `vqaEval.py` computes it), written here from
its rules:

- a prediction is cleaned: newlines and tabs become spaces, ends stripped, then `normalize_punctuation` and
  `normalize_words`;
- the references are used as given, except that when they are not all equal each one goes through
  `normalize_punctuation` only (the official tool's behaviour: VQA annotations are already normalised);
- accuracy of one question = the mean, over its references, of min(1, (matches among the *other* references) / 3)
  (10 references: the average over the 10 leave-one-out subsets of nine); the overall score is the mean over
  questions (the official tool reports it x 100, rounded to 2 decimals).

Framework-neutral, pure Python.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Punctuation removed, or turned into a space (see normalize_punctuation).
PUNCTUATION = (";", ":", "/", "'", "[", "]", '"', "(", ")", "=", "+", "\\", "_", ">", "<", "@", "`", ",", "?")
_PERIOD = re.compile(r"\.(?!\d)")  # a full stop not followed by a digit ("2.5" keeps its point)
_PERIOD_LIMIT = 32  # the official tool passes re.UNICODE (32) as `count`: at most 32 full stops go
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
ARTICLES = ("a", "an", "the")
_Q = "\u2019"  # the official table writes contractions with a right single quotation mark
# Words written without their apostrophe, and the contraction the official tool turns them into.
CONTRACTIONS = {
    word: word[:cut] + _Q + word[cut:]
    for word, cut in (
        ("aint", 3), ("arent", 4), ("cant", 3), ("couldve", 5), ("couldnt", 6), ("didnt", 4), ("doesnt", 5),
        ("dont", 3), ("hadnt", 4), ("hasnt", 4), ("havent", 5), ("hed", 2), ("hes", 2), ("howd", 3), ("howll", 3),
        ("hows", 3), ("isnt", 3), ("itd", 2), ("itll", 2), ("maam", 2), ("mightnt", 6), ("mightve", 5),
        ("mustnt", 5), ("mustve", 4), ("neednt", 5), ("notve", 3), ("oclock", 1), ("oughtnt", 6), ("shant", 4),
        ("shouldve", 6), ("shouldnt", 7), ("somebodyll", 8), ("somebodys", 8), ("someoned", 7), ("someonell", 7),
        ("someones", 7), ("somethingd", 9), ("somethingll", 9), ("thats", 4), ("thered", 5), ("therere", 5),
        ("theres", 5), ("theyd", 4), ("theyll", 4), ("theyre", 4), ("theyve", 4), ("wasnt", 4), ("werent", 5),
        ("whatll", 4), ("whatre", 4), ("whats", 4), ("whatve", 4), ("whens", 4), ("whered", 5), ("whereve", 5),
        ("whod", 3), ("wholl", 3), ("whos", 3), ("whyll", 3), ("whyre", 3), ("whys", 3), ("wont", 3),
        ("wouldve", 5), ("wouldnt", 6), ("yall", 1), ("youd", 3), ("youll", 3), ("youre", 3), ("youve", 3),
    )
}  # fmt: skip
# Three entries of the official table use a straight apostrophe, and "twas" gains a leading one.
CONTRACTIONS.update({"weve": "we've", "wheres": "where's", "whove": "who've", "twas": _Q + "twas"})


def normalize_punctuation(text: str) -> str:
    """Each punctuation mark is deleted when it touches a space (or the text has a digit-comma-digit), else
    replaced by a space; then full stops not followed by a digit are deleted."""
    delete = bool(_DIGIT_COMMA_DIGIT.search(text))
    out = text
    for mark in PUNCTUATION:
        gone = delete or (mark + " ") in text or (" " + mark) in text
        out = out.replace(mark, "" if gone else " ")
    return _PERIOD.sub("", out, count=_PERIOD_LIMIT)


def normalize_words(text: str) -> str:
    """Lower-cased words; number words as digits ("two" -> "2"), articles dropped, apostrophe-less contractions
    restored ("dont" -> "don't" with a typographic apostrophe), joined by single spaces."""
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    return " ".join(CONTRACTIONS.get(word, word) for word in words if word not in ARTICLES)


def normalize_answer(answer: str) -> str:
    """A predicted answer as the official tool compares it."""
    if not isinstance(answer, str):
        raise TypeError(f"an answer must be a string, got {type(answer).__name__}")
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    return normalize_words(normalize_punctuation(text))


def question_accuracy(prediction: str, references: Sequence[str], normalize_references: bool = False) -> float:
    """One question's VQA accuracy in [0, 1] (see the module docstring). `normalize_references=True` puts every
    reference through the prediction's normalisation first (for references not already normalised as VQA's are:
    "three" against a predicted "three", which the official rules turn into "3").

    Raises TypeError for non-string answers, ValueError for no references."""
    if isinstance(references, str) or not references:
        raise ValueError("each question needs a list of reference answers (10 in VQA v2), got none")
    if not all(isinstance(reference, str) for reference in references):
        raise TypeError("reference answers must be strings")
    predicted = normalize_answer(prediction)
    refs = [normalize_answer(reference) for reference in references] if normalize_references else list(references)
    if len(set(refs)) > 1 and not normalize_references:
        refs = [normalize_punctuation(reference) for reference in refs]
    matches = [reference == predicted for reference in refs]
    total = sum(matches)
    return sum(min(1.0, (total - own) / 3.0) for own in matches) / len(refs)


def vqa_accuracy(
    predictions: Sequence[str], references: Sequence[Sequence[str]], normalize_references: bool = False
) -> float:
    """The mean VQA accuracy in [0, 1] of `predictions` against each question's reference answers
    (`normalize_references`: see `question_accuracy`).

    Raises ValueError when the counts differ or there are no questions."""
    if len(predictions) != len(references) or not references:
        raise ValueError(f"got {len(predictions)} predictions for {len(references)} questions")
    pairs = zip(predictions, references, strict=True)
    return sum(question_accuracy(p, r, normalize_references) for p, r in pairs) / len(references)
