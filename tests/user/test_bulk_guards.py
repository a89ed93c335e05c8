"""What protects a user's data and time around bulk jobs (found by trying them as a new user): one run per output
folder, no output inside the input, options and checkpoints checked before anything is written, options that do
not apply refused, errors in the command line's own words, Ctrl-C as one line, and a script without a `__main__`
guard told what to do."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from blip_core.bulk import capfilt, caption_dataset
from blip_core.bulk.shards import OutputExistsError
from blip_core.cli.bulk import command_line_message
from blip_core.cli.main import main
from tests.helpers.bulk_scenes import CAPTIONER, FILTER, write_scenes

SMALL = {"model": CAPTIONER, "batch_size": 4, "workers": 0}
MODELS = ["--captioner", CAPTIONER, "--filter", FILTER]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("guards") / "scenes"
    write_scenes(folder, count=4)
    return folder


def test_a_folder_in_use_by_another_run_is_refused(scenes, tmp_path):
    """The lock is held for the whole run: a second job into the same folder meanwhile is refused, naming it."""
    from blip_core.bulk.jobs import CaptionJob
    from blip_core.bulk.shards import OutputFolder
    from blip_core.bulk.sources import open_source

    source, job = open_source(str(scenes)), CaptionJob(model=CAPTIONER, batch_size=4)
    first = OutputFolder(tmp_path / "out", job, source, "parquet", 2)
    first.open()
    try:
        with pytest.raises(OutputExistsError, match="is in use by another run"):
            caption_dataset(scenes, tmp_path / "out", **SMALL, shard_size=2)
    finally:
        first.close()
    summary = caption_dataset(scenes, tmp_path / "out", **SMALL, shard_size=2)  # released: the job runs
    assert summary.counts == {"records": 4, "failed": 0}


def test_an_output_inside_the_input_is_refused(scenes, tmp_path):
    with pytest.raises(ValueError, match="is inside the input folder"):
        caption_dataset(scenes, scenes / "out", **SMALL)
    assert not (scenes / "out").exists()
    folder = tmp_path / "images"  # an output already there (written before the check existed): refused the same way
    write_scenes(folder, count=2)
    (folder / "out").mkdir()
    (folder / "out" / "part-00000.parquet").write_bytes(b"PAR1")
    with pytest.raises(ValueError, match="is inside the input folder"):
        caption_dataset(folder, folder / "out", **SMALL)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"top_k": -1}, "top_k"),  # a generation option the model refuses at its first batch
        ({"filter_model": CAPTIONER}, "filter_model must be a BlipForImageTextRetrieval checkpoint"),
        ({"captioner": FILTER}, "captioner must be a BlipForConditionalGeneration checkpoint"),
        ({"sampling": "beam", "top_p": 0.5}, "top_p applies to nucleus sampling"),
        ({"num_beams": 4}, "num_beams applies to sampling='beam'"),
        ({"top_p": 1.5}, "top_p must be in"),
    ],
)
def test_a_run_that_fails_before_its_first_shard_leaves_no_folder(scenes, tmp_path, options, message):
    models = {"captioner": CAPTIONER, "filter_model": FILTER}
    with pytest.raises(ValueError, match=message):
        capfilt(scenes, tmp_path / "out", workers=0, batch_size=4, **{**models, **options})
    assert not (tmp_path / "out").exists()


def test_ray_writes_parquet_only(scenes, tmp_path):
    with pytest.raises(ValueError, match="writes Parquet"):
        caption_dataset(scenes, tmp_path / "out", engine="ray", output_format="jsonl", model=CAPTIONER)
    assert not (tmp_path / "out").exists()


def test_errors_name_the_command_line_options():
    assert command_line_message(ValueError("batch_size must be a positive integer, got 0")) == (
        "--batch-size must be a positive integer, got 0"
    )
    assert command_line_message(ValueError("x: pass --overwrite (overwrite=True) to replace it")) == (
        "x: pass --overwrite to replace it"
    )
    assert command_line_message(ValueError("ray_actors, num_gpus apply to engine='ray'")) == (
        "--actors, --num-gpus apply to --engine ray"
    )
    assert command_line_message(ValueError("4 model actors leave no CPU (--actors)")) == (
        "4 model actors leave no CPU (--actors)"
    )


def _blip(argv: list, capsys) -> tuple[int, str, list[str]]:
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


def test_command_line_refusals_are_one_line(scenes, tmp_path, capsys):
    parquet = tmp_path / "web.parquet"
    parquet.write_bytes(b"PAR1")
    code, out, err = _blip(["caption", parquet], capsys)
    assert (code, out) == (2, "")
    assert err == [f"blip: error: {parquet} is a dataset (Parquet or WebDataset): caption it with --out DIR"]
    code, out, err = _blip(
        ["caption", scenes, "--out", tmp_path / "o", "--model", CAPTIONER, "--format", "jsonl"], capsys
    )
    assert (code, out, len(err)) == (2, "", 1) and "--out-format" in err[0] and not (tmp_path / "o").exists()
    code, out, err = _blip(
        ["capfilt", scenes, "--out", tmp_path / "c", *MODELS, "--sampling", "beam", "--top-p", "0.5"], capsys
    )
    assert (code, out, len(err)) == (2, "", 1) and "top_p applies to nucleus sampling" in err[0]


def test_ctrl_c_is_one_line_and_keeps_the_shards(scenes, tmp_path, capsys, monkeypatch):
    import blip_core.bulk.api as api

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "caption_dataset", interrupted)
    code, out, err = _blip(["caption", scenes, "--out", tmp_path / "out", "--model", CAPTIONER], capsys)
    assert (code, out) == (130, "")
    assert err == ["blip: caption: interrupted; the shards written are kept: run the same command to resume"]


def test_a_script_without_a_main_guard_is_told_what_to_do(scenes, tmp_path):
    """Spawned workers import the script; without `if __name__ == "__main__":` they cannot start. The error says
    so (not "run again to resume", which would fail the same way)."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from blip_core.bulk import caption_dataset
            caption_dataset({str(scenes)!r}, model={CAPTIONER!r}, batch_size=4, workers=1)
            """
        )
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: the preprocessing worker processes could not start")
    assert "if __name__ == '__main__':" in last and "workers=0" in last
