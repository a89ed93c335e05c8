"""Pipelines for every task in both frameworks: same results, transformers' output shapes, clear errors."""

from __future__ import annotations

import functools
import http.server
import threading
from unittest import mock

import numpy as np
import PIL.Image
import pytest
import torch

import blip_core
import blip_tf
import blip_torch
from blip_core.demo.tasks import DEMO_MODELS_DIR, held_out
from tests.helpers.golden import load_json
from tests.helpers.images import base_rgb, fixture

IMAGES = [base_rgb(50, 60, seed=1), PIL.Image.fromarray(base_rgb(44, 64, seed=2)), str(fixture("rgba.png"))]

# TF runs of tests whose pipeline logic is framework-neutral: each compiles its own XLA loops (--run-slow).
PT_AND_SLOW_TF = [pytest.param("pt"), pytest.param("tf", marks=pytest.mark.slow)]


@pytest.fixture(scope="module")
def pipes(small_models):
    cache = {}

    def get(task, framework, name):
        key = (task, framework)
        if key not in cache:
            cache[key] = blip_core.pipeline(task, model=str(small_models[name]), framework=framework)
        return cache[key]

    return get


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_image_to_text(pipes, framework):
    pipe = pipes("image-to-text", framework, "BlipForConditionalGeneration")
    single = pipe(IMAGES[0], max_new_tokens=5)
    assert isinstance(single, list) and set(single[0]) == {"generated_text"}
    many = pipe(IMAGES, max_new_tokens=5, batch_size=2)
    assert len(many) == 3 and many[0] == single
    prompted = pipe(IMAGES[0], prompt="a picture of", max_new_tokens=3)
    assert prompted[0]["generated_text"].startswith("a picture of")


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_visual_question_answering(pipes, framework):
    pipe = pipes("visual-question-answering", framework, "BlipForQuestionAnswering")
    out = pipe(IMAGES[1], question="how many circles are there?", max_new_tokens=4)
    assert set(out[0]) == {"answer"} and isinstance(out[0]["answer"], str)
    with pytest.raises(ValueError, match="needs a question"):
        pipe(IMAGES[1])


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_matching_and_zero_shot(pipes, framework):
    match = pipes("image-text-matching", framework, "BlipForImageTextRetrieval")(
        IMAGES[0], text=["a red circle", "a blue square"]
    )
    assert [m["text"] for m in match] == ["a red circle", "a blue square"]
    assert all(0 <= m["itm_score"] <= 1 and -1 <= m["itc_score"] <= 1 for m in match)
    ranked = pipes("zero-shot-image-classification", framework, "BlipForImageTextRetrieval")(
        IMAGES[0], candidate_labels=["cat", "dog", "car"]
    )
    assert sorted(r["label"] for r in ranked) == ["car", "cat", "dog"]
    assert abs(sum(r["score"] for r in ranked) - 1) < 1e-5 and ranked[0]["score"] >= ranked[-1]["score"]


def test_frameworks_agree(pipes):
    for task, name, kwargs in [
        ("image-to-text", "BlipForConditionalGeneration", {"max_new_tokens": 6, "num_beams": 2}),
        (
            "visual-question-answering",
            "BlipForQuestionAnswering",
            {"question": "what color is it?", "max_new_tokens": 4},
        ),
    ]:
        assert pipes(task, "pt", name)(IMAGES, **kwargs) == pipes(task, "tf", name)(IMAGES, **kwargs)
    a = pipes("image-text-matching", "pt", "BlipForImageTextRetrieval")(IMAGES[2], text=["a", "b c"])
    b = pipes("image-text-matching", "tf", "BlipForImageTextRetrieval")(IMAGES[2], text=["a", "b c"])
    assert all(
        abs(x["itm_score"] - y["itm_score"]) < 1e-5 and abs(x["itc_score"] - y["itc_score"]) < 1e-5
        for x, y in zip(a, b, strict=True)
    )


def test_framework_bound_pipelines(small_models):
    assert (
        blip_torch.pipeline("image-to-text", model=str(small_models["BlipForConditionalGeneration"])).framework == "pt"
    )
    assert blip_tf.pipeline("image-to-text", model=str(small_models["BlipForConditionalGeneration"])).framework == "tf"


def test_bad_task_and_framework(small_models):
    with pytest.raises(ValueError, match="unknown task 'captioning'"):
        blip_core.pipeline("captioning", model=str(small_models["BlipForConditionalGeneration"]))
    with pytest.raises(ValueError, match="framework must be 'pt', 'tf' or 'onnx'"):
        blip_core.pipeline("image-to-text", model=str(small_models["BlipForConditionalGeneration"]), framework="jax")


def test_loaded_model_and_processor(small_models):
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(small_models["BlipForConditionalGeneration"])
    processor = blip_core.BlipProcessor.from_pretrained(small_models["BlipForConditionalGeneration"])
    pipe = blip_core.pipeline("image-to-text", model=model, processor=processor, framework="pt")
    assert pipe(np.zeros((32, 32, 3), np.uint8), max_new_tokens=2)[0]["generated_text"] is not None


# -- transformers' call forms beyond the golden cases, empty inputs, lazy streams, errors --------------

HELD = held_out(4, 4)
GOLDEN = load_json("pipelines.json")["cases"]


def _result(name: str):
    return GOLDEN[name]["result"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Pipelines on the embedded demo models (float32), built once per task and framework."""
    cache = {}

    def get(task, framework):
        if (task, framework) not in cache:
            folder = DEMO_MODELS_DIR / (
                "BlipForQuestionAnswering" if "question" in task else "BlipForConditionalGeneration"
            )
            cache[task, framework] = blip_core.pipeline(task, model=str(folder), framework=framework, dtype="float32")
        return cache[task, framework]

    return get


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """An http:// URL of held-out image 4 (as the seed page's example fetches its photo)."""
    folder = tmp_path_factory.mktemp("served")
    HELD.images[0].save(folder / "shapes.png")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/shapes.png"
    server.shutdown()


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_the_seed_pages_calls(framework, demo, served, image_urls_allowed):
    vqa = demo("visual-question-answering", framework)
    assert vqa(question=HELD.questions[0], image=served) == _result("vqa_seed_form")
    captioner = demo("image-to-text", framework)
    assert captioner(served, generate_kwargs={"max_new_tokens": 3}) == _result("cap_generate_kwargs")


class Counting:
    """A generator of images that counts how many were taken."""

    def __init__(self, images):
        self.images, self.taken = list(images), 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.taken == len(self.images):
            raise StopIteration
        self.taken += 1
        return self.images[self.taken - 1]


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_generators_stream_lazily_batch_by_batch(framework, demo):
    captioner = demo("image-to-text", framework)
    source = Counting(HELD.images)
    results = captioner(source, batch_size=2)
    assert source.taken == 0 and not isinstance(results, list)
    assert next(results) == _result("cap_list")[0] and source.taken == 2
    assert list(results) == _result("cap_list")[1:] and source.taken == 4


class TorchStyleDataset(torch.utils.data.Dataset):
    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return self.rows[index]["image"]


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_datasets_and_iterables_give_iterators_and_lists_give_lists(framework, demo):
    captioner = demo("image-to-text", framework)
    rows = [{"image": image} for image in HELD.images]
    for source in (
        TorchStyleDataset(rows),
        blip_core.KeyDataset(rows, "image"),
        iter(HELD.images),
        map(lambda r: r["image"], rows),
    ):
        out = captioner(source)
        assert not isinstance(out, list) and list(out) == _result("cap_list")
    assert captioner(tuple(HELD.images[:2])) == _result("cap_list")[:2]  # transformers rejects a tuple


def _refuse(*args, **kwargs):
    raise AssertionError("the model ran on an empty input")


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_empty_inputs_never_reach_a_model(framework, pipes):
    cases = [
        ("image-to-text", "BlipForConditionalGeneration", {}),
        ("image-text-to-text", "BlipForConditionalGeneration", {"text": "a photo of"}),
        ("visual-question-answering", "BlipForQuestionAnswering", {"question": "what?"}),
        ("zero-shot-image-classification", "BlipForImageTextRetrieval", {"candidate_labels": ["a", "b"]}),
        ("image-text-matching", "BlipForImageTextRetrieval", {"text": ["a"]}),
    ]
    for task, name, kwargs in cases:
        pipe = pipes(task, framework, name)
        model, pipe.model = pipe.model, mock.Mock(side_effect=_refuse, generate=mock.Mock(side_effect=_refuse))
        try:
            assert pipe([], **kwargs) == []
            assert list(pipe(iter([]), **kwargs)) == []
            assert list(pipe(blip_core.KeyDataset([], "image"), **kwargs)) == []
        finally:
            pipe.model = model
    vqa = pipes("visual-question-answering", framework, "BlipForQuestionAnswering")
    assert vqa(IMAGES[0], question=[]) == [] and vqa([]) == [] and vqa([], question=[]) == []


@pytest.mark.parametrize("framework", PT_AND_SLOW_TF)
def test_where_transformers_drops_or_breaks_options_they_work(framework, demo):
    vqa = demo("visual-question-answering", framework)
    # transformers' VQA pipeline ignores generation options given at the call; here they apply
    assert vqa(HELD.images[0], HELD.questions[1], max_new_tokens=1) == _result("vqa_options_at_construction")
    assert vqa(HELD.images[0], HELD.questions[1], generate_kwargs={"max_new_tokens": 1}) == _result(
        "vqa_options_at_construction"
    )
    captioner = demo("image-to-text", framework)
    # transformers returns the first image's sequences split across images here; each image keeps its own
    options = {"generate_kwargs": {"num_beams": 3, "num_return_sequences": 2}}
    batched = captioner(HELD.images[:2], batch_size=2, **options)
    assert batched[0] == _result("cap_beams_two_sequences") and batched[1] == captioner(HELD.images[1], **options)
    assert len(batched[1]) == 2
    # transformers' 256 new tokens override a max_length given in generate_kwargs; here max_length counts
    assert captioner(HELD.images[0], generate_kwargs={"max_length": 4}) == _result("cap_generate_kwargs")
    # transformers ignores a second positional argument with a log line; here it is the prompt
    assert captioner(HELD.images[0], "a picture of") == _result("cap_prompt")
    prompted = demo("image-text-to-text", framework)
    # one text for several images prompts each (transformers answers for the first image only)
    assert prompted(HELD.images[:2], text="a picture of") == [
        r[0] for r in _result("itt_generator_of_dicts")["iterator"]
    ]
    # return_tensors=False means text (transformers returns tensors for any non-None value)
    assert prompted(HELD.images[0], text="a picture of", return_tensors=False) == _result("itt_single")


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_zero_shot_options(framework, pipes):
    pipe = pipes("zero-shot-image-classification", framework, "BlipForImageTextRetrieval")
    full = pipe(IMAGES[0], candidate_labels=["cat", "dog", "car"])
    assert pipe(IMAGES[0], candidate_labels=["cat", "dog", "car"], top_k=2) == full[:2]
    assert pipe(IMAGES[0], candidate_labels="cat") == [{"score": 1.0, "label": "cat"}]  # one label, not 3 letters
    assert pipe(images=[IMAGES[0]], candidate_labels=["cat", "dog", "car"]) == [full]
    with pytest.raises(TypeError, match=r"unexpected arguments \['max_new_tokens'\]"):
        pipe(IMAGES[0], candidate_labels=["cat"], max_new_tokens=3)
    with pytest.raises(ValueError, match="candidate_labels"):
        pipe(IMAGES[0], candidate_labels=[])
    with pytest.raises(ValueError, match="needs candidate_labels"):
        pipe(IMAGES[0])


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_bad_calls_are_clear_errors(framework, pipes):
    captioner = pipes("image-to-text", framework, "BlipForConditionalGeneration")
    vqa = pipes("visual-question-answering", framework, "BlipForQuestionAnswering")
    prompted = pipes("image-text-to-text", framework, "BlipForConditionalGeneration")
    checks = [
        (TypeError, "images given twice", lambda: captioner(IMAGES[0], images=IMAGES[1])),
        (ValueError, r"images\[1\] is a list", lambda: captioner([IMAGES[0], [IMAGES[1]]])),
        (ValueError, "is a dict", lambda: captioner({"image": IMAGES[0]})),
        (ValueError, "batch_size must be a positive integer", lambda: captioner(IMAGES, batch_size=0)),
        (TypeError, r"unexpected arguments \['num_beam'\]", lambda: captioner(IMAGES[0], num_beam=2)),
        (TypeError, r"unexpected arguments \['typo'\]", lambda: captioner(IMAGES[0], generate_kwargs={"typo": 1})),
        (TypeError, "generate_kwargs must be a dict", lambda: captioner(IMAGES[0], generate_kwargs=3)),
        (ValueError, "timeout must be a positive number", lambda: captioner(IMAGES[0], timeout=-1)),
        (ValueError, "needs a question", lambda: vqa(IMAGES[0])),
        (ValueError, "must have 'image' and 'question' keys", lambda: vqa({"image": IMAGES[0]})),
        (ValueError, "a list of questions needs a list of images", lambda: vqa(iter(IMAGES), question=["a", "b"])),
        (ValueError, "question must be a string", lambda: vqa(IMAGES[0], question=3)),
        (TypeError, "question given twice", lambda: vqa(IMAGES[0], "a?", question="b?")),
        (ValueError, "no chat template", lambda: prompted(text=[{"role": "user", "content": "hi"}])),
        (ValueError, "generates only from an image", lambda: prompted(text="a photo of")),
        (ValueError, "got 2 images and 3 texts", lambda: prompted(IMAGES[:2], text=["a", "b", "c"])),
        (
            ValueError,
            "mutually exclusive",
            lambda: prompted(IMAGES[0], text="a", return_full_text=True, return_tensors=True),
        ),
    ]
    for error, message, call in checks:
        with pytest.raises(error, match=message):
            call()


def test_construction_errors_and_aliases(small_models):
    folder = str(small_models["BlipForQuestionAnswering"])
    with pytest.raises(TypeError, match="inputs of each call"):
        blip_core.pipeline("vqa", model=folder, framework="pt", question="what?")
    with pytest.raises(TypeError, match="pipeline_class"):
        blip_core.pipeline("vqa", model=folder, framework="pt", pipeline_class=object)
    with pytest.raises(ValueError, match="give one"):
        blip_core.pipeline("vqa", model=folder, framework="pt", dtype="float32", torch_dtype="float16")
    with pytest.raises(ValueError, match="not a torch device"):
        blip_core.pipeline("vqa", model=folder, framework="pt", device="warp-drive")
    with pytest.raises(TypeError, match="unexpected arguments"):
        blip_core.pipeline(
            "zero-shot-image-classification", model=str(small_models["BlipModel"]), framework="pt", foo=1
        )
    with pytest.raises(TypeError, match=r"image-to-text pipeline got unexpected arguments \['foo'\]"):
        blip_core.pipeline("image-to-text", model=str(small_models["BlipForConditionalGeneration"]), foo=1)
    assert blip_core.pipeline("vqa", model=folder, framework="pt").task == "visual-question-answering"
    assert blip_core.pipeline(model=folder, framework="pt").task == "visual-question-answering"  # from config.json
    zero_shot = blip_core.pipeline(
        "zero-shot-image-classification", model=str(small_models["BlipModel"]), framework="tf"
    )
    assert type(zero_shot.model).__name__ == "TFBlipModel"  # a BlipModel checkpoint runs as transformers runs it


def test_devices_and_dtypes(small_models):
    folder = str(small_models["BlipForConditionalGeneration"])
    expected_default = torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    for device, expected in ((-1, "cpu"), ("cpu", "cpu"), (torch.device("cpu"), "cpu"), (None, str(expected_default))):
        pipe = blip_core.pipeline("image-to-text", model=folder, framework="pt", device=device)
        assert str(pipe.device) == expected and str(next(pipe.model.parameters()).device).startswith(expected)
    for dtype, torch_dtype in ((torch.bfloat16, None), (None, "bfloat16"), ("torch.bfloat16", None)):
        pipe = blip_core.pipeline("image-to-text", model=folder, framework="pt", dtype=dtype, torch_dtype=torch_dtype)
        assert pipe.dtype == torch.bfloat16 and isinstance(pipe(IMAGES[0], max_new_tokens=2)[0]["generated_text"], str)
    demo_folder = str(DEMO_MODELS_DIR / "BlipForConditionalGeneration")  # saved as float16
    assert blip_core.pipeline("image-to-text", model=demo_folder, framework="pt").dtype == torch.float16  # "auto"
    assert (
        blip_core.pipeline("image-to-text", model=demo_folder, framework="pt", torch_dtype="auto").torch_dtype
        == torch.float16
    )
    tf_pipe = blip_core.pipeline("image-to-text", model=folder, framework="tf", device=-1, dtype="bfloat16")
    assert tf_pipe.device == "/CPU:0" and isinstance(tf_pipe(IMAGES[0], max_new_tokens=2)[0]["generated_text"], str)
    # a named accelerator that is not there is refused by name (an int device falls back to the CPU, as above)
    for framework, device in (("tf", "cuda:1"), ("tf", "/GPU:0"), ("pt", "cuda")):
        if framework == "pt" and torch.cuda.is_available():
            continue
        with pytest.raises(ValueError, match=r"device '(cuda|/GPU:[01])' is not available"):
            blip_core.pipeline("image-to-text", model=folder, framework=framework, device=device)


@pytest.mark.parametrize("framework", PT_AND_SLOW_TF)
def test_stop_sequence_ends_the_text_at_that_token(framework, demo):
    prompted = demo("image-text-to-text", framework)
    full = _result("itt_single")[0]["generated_text"]  # "a picture of on a white background"
    cut = full[: full.index("white") + len("white")]
    assert prompted(HELD.images[0], text="a picture of", stop_sequence="white") == [
        {"input_text": "a picture of", "generated_text": cut}
    ]
    # a stop token that never comes leaves the caption as it was (transformers would drop the usual end)
    assert prompted(HELD.images[0], text="a picture of", stop_sequence="zebra") == _result("itt_single")


def test_prompt_per_image_and_save_pretrained(pipes, tmp_path, small_models):
    captioner = pipes("image-to-text", "pt", "BlipForConditionalGeneration")
    pairs = zip(IMAGES[:2], ["a", "two"], strict=True)
    one_by_one = [captioner(image, prompt=prompt, max_new_tokens=3) for image, prompt in pairs]
    assert captioner(IMAGES[:2], prompt=["a", "two"], max_new_tokens=3, batch_size=2) == one_by_one
    with pytest.raises(ValueError, match="got 2 images and 1 texts"):
        captioner(IMAGES[:2], prompt=["a"])
    captioner.save_pretrained(tmp_path / "saved")
    again = blip_core.pipeline("image-to-text", model=str(tmp_path / "saved"), framework="tf")
    assert again(IMAGES[0], max_new_tokens=4) == captioner(IMAGES[0], max_new_tokens=4)


def test_file_objects_and_bytes_are_one_image_each(pipes):
    """A binary file object iterates its lines, but it is one image (transformers raises a TypeError; a
    generator of lines would give a wrong iterator of results)."""
    import io

    pipe = pipes("image-to-text", "pt", "BlipForConditionalGeneration")
    path = str(fixture("rgba.png"))
    expected = pipe(path, max_new_tokens=4)
    with open(path, "rb") as handle:
        assert pipe(handle, max_new_tokens=4) == expected
    data = fixture("rgba.png").read_bytes()
    assert pipe(io.BytesIO(data), max_new_tokens=4) == expected
    assert pipe([data, path], max_new_tokens=4) == [expected, expected]
    vqa = pipes("visual-question-answering", "pt", "BlipForQuestionAnswering")
    assert vqa(io.BytesIO(data), question="what is it?") == vqa(path, question="what is it?")
