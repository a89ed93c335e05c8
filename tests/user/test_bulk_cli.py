"""`blip caption DIR --out OUT` and `blip capfilt`: options reach the job (the same rows as the Python API), the
counts on stdout, a sentence on stderr, exit codes 0 / 1 / 2, and one-line usage errors. In-process through
`main([...])`, plus one real `blip capfilt` subprocess and one run on a local Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from blip_core.bulk import capfilt, caption_dataset, read_output
from blip_core.cli.main import main
from tests.helpers.bulk_scenes import BROKEN, CAPTIONER, FILTER, assert_same_rows, write_scenes

pytestmark = pytest.mark.xdist_group("ray")  # one local Ray at a time: these share a pytest-xdist worker

MODELS = ["--captioner", CAPTIONER, "--filter", FILTER]
CAPFILT_ARGS = [*MODELS, "--num-captions", "2", "--seed", "4", "--temperature", "2.0", "--max-new-tokens", "20"]
CAPFILT_API = {"captioner": CAPTIONER, "filter_model": FILTER, "num_captions": 2, "seed": 4, "temperature": 2.0}
CAPFILT_API |= {"max_new_tokens": 20}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bulk_cli")
    write_scenes(root / "clean")
    write_scenes(root / "broken", broken=True)
    return root


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def blip(argv: list, capsys) -> tuple[int, str, list[str]]:
    """(exit code, stdout, stderr lines) of `blip argv` run in this process."""
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


def test_caption_out_parquet_takes_generation_options(folders, tmp_path, capsys):
    """`--num-beams 3 --prompt ...` reach the job: the rows of `caption_dataset(..., num_beams=3, prompt=...)`."""
    argv = ["caption", folders / "clean", "--out", tmp_path / "out", "--model", CAPTIONER, "--workers", "0"]
    code, out, err = blip([*argv, "--num-beams", "3", "--prompt", "there are"], capsys)
    assert code == 0 and json.loads(out) == {"records": 16, "failed": 0}
    assert err == [f"blip: caption: 16 records, 0 unusable; output in {tmp_path / 'out'}"]
    listed = sorted(path.name for path in (tmp_path / "out").iterdir() if not path.name.startswith("."))
    assert listed == ["manifest.json", "part-00000.parquet"]
    expected = caption_dataset(folders / "clean", None, model=CAPTIONER, prompt="there are", num_beams=3, workers=0)
    assert read_output(tmp_path / "out") == expected.rows
    assert all(row["caption"].startswith("there are ") for row in expected.rows)
    greedy = caption_dataset(folders / "clean", None, model=CAPTIONER, prompt="there are", workers=0)
    assert greedy.rows != expected.rows  # --num-beams changed something, so the comparison above means it reached


def test_caption_out_jsonl_with_sampling_and_broken_images(folders, tmp_path, capsys):
    """`--out-format jsonl --shard-size 5`, seeded sampling options; unusable images: exit 1, error rows."""
    sampling = ["--do-sample", "--seed", "5", "--top-p", "0.9", "--temperature", "2.0", "--max-new-tokens", "20"]
    argv = ["caption", folders / "broken", "--out", tmp_path / "out", "--model", CAPTIONER, "--workers", "0"]
    code, out, err = blip([*argv, "--out-format", "jsonl", "--shard-size", "5", *sampling], capsys)
    assert code == 1 and json.loads(out) == {"records": 18, "failed": 2}
    assert err == [f"blip: caption: 18 records, 2 unusable; output in {tmp_path / 'out'}"]
    assert sorted(path.name for path in (tmp_path / "out").glob("part-*")) == [f"part-0000{i}.jsonl" for i in range(4)]
    options = {"do_sample": True, "seed": 5, "top_p": 0.9, "temperature": 2.0, "max_new_tokens": 20}
    expected = caption_dataset(folders / "broken", None, model=CAPTIONER, workers=0, **options)
    assert read_output(tmp_path / "out") == expected.rows
    assert sorted(row["key"] for row in expected.rows if row["error"]) == sorted(BROKEN)


def test_capfilt_counts_sentence_and_exit_codes(folders, tmp_path, capsys):
    """Broken images: exit 1, the counts JSON on stdout, a sentence on stderr; the rows are the Python API's."""
    out_dir = tmp_path / "out"
    code, out, err = blip(["capfilt", folders / "broken", "--out", out_dir, "--workers", "0", *CAPFILT_ARGS], capsys)
    expected = capfilt(folders / "broken", None, workers=0, **CAPFILT_API)
    assert code == 1 and out.count("\n") == 1 and json.loads(out) == expected.counts
    assert expected.counts["records"] == 18 and expected.counts["failed"] == 2
    counts = expected.counts
    assert err == [
        f"blip: capfilt: 18 records, 2 unusable; kept {counts['web_kept']} of {counts['web_texts']} web texts and "
        f"{counts['captions_kept']} of {counts['captions']} synthetic captions; output in {out_dir}"
    ]
    assert read_output(out_dir) == expected.rows
    code, out, err = blip(["capfilt", folders / "broken", "--out", out_dir, "--workers", "0", *CAPFILT_ARGS], capsys)
    assert code == 1 and json.loads(out) == counts and err[0].startswith("blip: capfilt: already complete")


def test_capfilt_wrong_filter_then_right_one(folders, tmp_path, capsys):
    """A captioner given as --filter: one line, exit 2; the corrected command then runs in the same folder and,
    with every image usable, exits 0."""
    out_dir = tmp_path / "out"
    wrong = ["capfilt", folders / "clean", "--out", out_dir, "--captioner", CAPTIONER, "--filter", CAPTIONER]
    wrong += ["--workers", "0"]
    code, out, err = blip(wrong, capsys)
    assert (code, out, len(err)) == (2, "", 1)
    assert err[0].startswith("blip: error: ") and "BlipForImageTextRetrieval" in err[0]
    code, out, err = blip(["capfilt", folders / "clean", "--out", out_dir, "--workers", "0", *MODELS], capsys)
    assert code == 0 and json.loads(out)["records"] == 16 and json.loads(out)["failed"] == 0
    assert len(err) == 1 and err[0].startswith("blip: capfilt: 16 records, 0 unusable; kept 8 of 15 web texts")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["caption", "x", "--workers", "2"], "blip: error: --workers apply to datasets: add --out DIR"),
        (
            ["capfilt", "x", "--out", "y", *MODELS, "--sampling", "beam", "--num-captions", "5", "--num-beams", "3"],
            "blip: error: beam search returns at most num_beams=3 captions, not 5",
        ),
        (["capfilt", "x", "--out", "y", *MODELS, "--threshold", "1.5"], "blip: error: threshold is a probability"),
    ],
)
def test_usage_errors_are_one_line(argv, message, capsys):
    code, out, err = blip(argv, capsys)
    assert (code, out, len(err)) == (2, "", 1)
    assert err[0].startswith(message)


def test_foreign_output_folder_is_refused(folders, tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("do not delete\n")
    argv = ["caption", folders / "clean", "--out", tmp_path / "mine", "--model", CAPTIONER, "--workers", "0"]
    code, out, err = blip(argv, capsys)
    assert (code, out, len(err)) == (2, "", 1)
    assert f"blip: error: {tmp_path / 'mine'} is not empty and holds no bulk-job manifest" in err[0]
    assert sorted(path.name for path in (tmp_path / "mine").iterdir()) == ["thesis.txt"]


def test_capfilt_subprocess(folders, tmp_path):
    """The real command, default preprocessing workers (processes): the same rows as the in-process API."""
    out_dir = tmp_path / "out"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    argv = [sys.executable, "-m", "blip_core.cli", "capfilt", str(folders / "broken"), "--out", str(out_dir)]
    done = subprocess.run([*argv, "--framework", "pt", *CAPFILT_ARGS], capture_output=True, text=True, env=env)
    expected = capfilt(folders / "broken", None, workers=0, **CAPFILT_API)
    assert done.returncode == 1, done.stderr
    assert done.stdout.count("\n") == 1 and json.loads(done.stdout) == expected.counts
    assert f"blip: capfilt: 18 records, 2 unusable; kept {expected.counts['web_kept']} of 15 web texts" in done.stderr
    assert "Traceback" not in done.stderr
    assert read_output(out_dir) == expected.rows


def test_capfilt_on_ray(ray_session, folders, tmp_path, capsys):
    """`--engine ray --actors 2`: the local engine's rows, by key; too many actors: one line, exit 2."""
    argv = ["capfilt", folders / "broken", "--out", tmp_path / "out", *CAPFILT_ARGS, "--batch-size", "4"]
    code, out, err = blip([*argv, "--engine", "ray", "--actors", "2"], capsys)
    expected = capfilt(folders / "broken", None, workers=0, batch_size=4, **CAPFILT_API)
    assert code == 1 and json.loads(out) == expected.counts
    assert err[-1].startswith("blip: capfilt: 18 records, 2 unusable")
    rows = {row["key"]: row for row in read_output(tmp_path / "out")}
    assert_same_rows(rows, {row["key"]: row for row in expected.rows})
    too_many = ["capfilt", folders / "clean", "--out", tmp_path / "other", *MODELS, "--engine", "ray", "--actors", "4"]
    code, out, err = blip(too_many, capsys)
    assert (code, out, len(err)) == (2, "", 1)
    assert err[0].startswith("blip: error: 4 model actors of 1 CPUs leave no CPU") and "--actors" in err[0]
    assert not Path(tmp_path / "other").exists()
