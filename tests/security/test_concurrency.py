"""Concurrent use, as a captioning web service does it: one pipeline, model and processor shared by threads.

8 threads run a mixed list of calls (captions with and without prompts, VQA, image-text matching,
zero-shot labels, streamed inputs, bare processor and tokenizer calls; batch sizes and generation options
vary) on objects they share, and every result must equal the one the same call gave when the calls ran one after another
(ids and texts identical, scores within 1e-5). TensorFlow's compiled functions must be traced once per
key even when threads ask for the same new shape at the same moment. Each race found is tested on its own
too: a tokenizer call truncated by another thread's settings, warning filters left behind by
`warnings.catch_warnings` in pipeline threads, the image resampling cache cleared under a reader.
"""

from __future__ import annotations

import random
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import PIL.Image
import pytest

import blip_core
from blip_core import BlipConfig, BlipImageProcessor, BlipProcessor, BlipTokenizer
from blip_core.modeling.function_cache import FunctionCache
from blip_core.processing.tokenization import BUNDLED_VOCAB_FILE
from tests.helpers.images import base_rgb
from tests.helpers.small import SMALL

THREADS = 8
IMAGES = [PIL.Image.fromarray(base_rgb(40 + 6 * i, 56 - 4 * i, seed=i)) for i in range(4)]
QUESTIONS = ["what color is it?", "how many are there?"]  # the same token count: one TF shape
TEXTS = ["a red circle", "a blue square on a table", "two dogs"]
LABELS = ["cat", "dog", "car"]
LONG = "a photo of a dog running across the green field near the old red barn " * 3


# -- running calls in threads and comparing results ---------------------------------------------------


def run_threads(calls: list[Callable[[], Any]], threads: int = THREADS) -> list[Any]:
    """Each thread runs its contiguous share of `calls` (all start together); results in call order."""
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []
    start = threading.Barrier(threads)
    share = -(-len(calls) // threads)

    def work(first: int) -> None:
        start.wait()
        try:
            for index in range(first, min(first + share, len(calls))):
                results[index] = calls[index]()
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            errors.append(err)

    workers = [threading.Thread(target=work, args=(n * share,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return results


def plain(value: Any) -> Any:
    """Framework tensors as NumPy, mappings and sequences as dicts and lists (for comparison)."""
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        return value.numpy()
    if isinstance(value, dict) or hasattr(value, "keys"):
        return {key: plain(value[key]) for key in value.keys()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def assert_same(got: Any, want: Any, where: str) -> None:
    """Ids, texts and shapes identical; floats within 1e-5."""
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray) and got.shape == want.shape and got.dtype == want.dtype, where
        if want.dtype.kind == "f":
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5, err_msg=where)
        else:
            np.testing.assert_array_equal(got, want, err_msg=where)
    elif isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), where
        for key in want:
            assert_same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for index, (a, b) in enumerate(zip(got, want, strict=True)):
            assert_same(a, b, f"{where}[{index}]")
    elif isinstance(want, float):
        assert isinstance(got, float) and abs(got - want) <= 1e-5, f"{where}: {got} != {want}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def check_concurrent(calls: list[tuple[str, Callable[[], Any]]]) -> None:
    """The calls give the same results in threads as one after another (run first, sequentially)."""
    expected = [plain(call()) for _, call in calls]
    got = run_threads([lambda call=call: plain(call()) for _, call in calls])
    for index, ((name, _), a, b) in enumerate(zip(calls, got, expected, strict=True)):
        assert_same(a, b, f"call {index} ({name})")


# -- the shared objects and the mixed calls -------------------------------------------------------------


class Service:
    """What a captioning service shares: one processor, one model per task, one pipeline per task."""

    def __init__(self, framework: str, folders: dict[str, Any]) -> None:
        module = __import__("blip_torch" if framework == "pt" else "blip_tf")
        prefix = "" if framework == "pt" else "TF"
        self.framework = framework
        self.processor = BlipProcessor.from_pretrained(folders["BlipForConditionalGeneration"])
        self.caption = getattr(module, prefix + "BlipForConditionalGeneration").from_pretrained(
            folders["BlipForConditionalGeneration"]
        )
        self.vqa = getattr(module, prefix + "BlipForQuestionAnswering").from_pretrained(
            folders["BlipForQuestionAnswering"]
        )
        self.itm = getattr(module, prefix + "BlipForImageTextRetrieval").from_pretrained(
            folders["BlipForImageTextRetrieval"]
        )
        models = {
            "image-to-text": self.caption,
            "visual-question-answering": self.vqa,
            "image-text-matching": self.itm,
            "zero-shot-image-classification": self.itm,
        }
        self.pipes = {
            task: blip_core.pipeline(task, model=model, processor=self.processor, framework=framework)
            for task, model in models.items()
        }
        self.configs = self.state()

    def tensors(self, batch: Any) -> dict[str, Any]:
        return dict(batch.items())

    def state(self) -> Any:
        """Everything calls must leave as they found it."""
        backend = self.processor.tokenizer._tokenizer
        return {
            "generation": [model.generation_config.to_dict() for model in (self.caption, self.vqa)],
            "image_processor": self.processor.image_processor.to_dict(),
            "backend": (backend.truncation, backend.padding),
            "warning_filters": list(warnings.filters),
        }


def mixed_calls(service: Service, count: int, light: bool, seed: int = 0) -> list[tuple[str, Callable[[], Any]]]:
    """`count` calls of every kind, options drawn from a seeded stream. `light`: TensorFlow's few shapes
    (each new generation shape is one XLA compilation)."""
    rng = random.Random(seed)
    tensors = "pt" if service.framework == "pt" else "tf"
    proc, pipes = service.processor, service.pipes

    def images(n: int) -> list[PIL.Image.Image]:
        first = rng.randrange(len(IMAGES))
        return [IMAGES[(first + k) % len(IMAGES)] for k in range(n)]

    def caption_pipe():
        n, beams = (rng.choice([1, 2]), 1) if light else (rng.choice([1, 2, 3]), rng.choice([1, 2]))
        chosen, size = images(n), 2 if light else rng.choice([1, 2])
        tokens = 3 if light else rng.choice([2, 4, 6])
        return lambda: pipes["image-to-text"](chosen, batch_size=size, max_new_tokens=tokens, num_beams=beams)

    def prompt_pipe():
        chosen, prompt = images(1)[0], "a picture of" if light else rng.choice(["a picture of", "there is a"])
        return lambda: pipes["image-to-text"](chosen, prompt=prompt, max_new_tokens=3)

    def caption_model():
        chosen = images(2 if light else rng.choice([1, 2]))
        options = rng.choice(
            [{"num_beams": 2}]
            if light
            else [{}, {"num_beams": 3, "length_penalty": 0.5}, {"do_sample": True, "top_k": 5, "seed": 7}]
        )

        def call():
            batch = proc(images=chosen, return_tensors=tensors)
            out = service.caption.generate(
                pixel_values=batch["pixel_values"],
                max_new_tokens=3,
                output_scores=True,
                return_dict_in_generate=True,
                **options,
            )
            scores = getattr(out, "sequences_scores", None)
            scores = [] if scores is None else scores
            return {"ids": out.sequences, "scores": list(out.scores), "sequence_scores": scores}

        return call

    def stream():  # each call its own generator: a generator is never shared between threads
        chosen = images(3)
        return lambda: list(pipes["image-to-text"](iter(chosen), batch_size=2, max_new_tokens=3))

    def vqa_pipe():
        chosen, question = images(1)[0], rng.choice(QUESTIONS)
        return lambda: pipes["visual-question-answering"](chosen, question=question, max_new_tokens=3)

    def vqa_model():
        chosen, question = images(1), rng.choice(QUESTIONS)

        def call():
            batch = proc(images=chosen, text=[question], return_tensors=tensors)
            return service.vqa.generate(**service.tensors(batch), max_new_tokens=3)

        return call

    def matching():
        chosen, texts = images(1)[0], rng.sample(TEXTS, rng.choice([1, 2, 3]))
        return lambda: pipes["image-text-matching"](chosen, text=texts)

    def zero_shot():
        chosen, labels = images(1)[0], rng.sample(LABELS, rng.choice([2, 3]))
        return lambda: pipes["zero-shot-image-classification"](chosen, candidate_labels=labels)

    def itm_model():
        chosen, head = images(2), rng.choice([True, False])

        def call():
            batch = proc(images=chosen, text=TEXTS[:2], padding=True, return_tensors=tensors)
            return service.itm(**service.tensors(batch), use_itm_head=head).itm_score

        return call

    def processor_only():
        chosen, length = images(rng.choice([1, 3])), rng.choice([3, 5, 9])
        texts = rng.sample(TEXTS, len(chosen)) if len(chosen) <= len(TEXTS) else TEXTS[:1] * len(chosen)

        def call():
            batch = proc(images=chosen, text=texts, truncation=True, max_length=length, padding="max_length")
            return {**batch, "tokens": proc.tokenizer.tokenize(LONG), "decoded": proc.decode(batch["input_ids"][0])}

        return call

    kinds = [caption_pipe, prompt_pipe, caption_model, stream, vqa_pipe, vqa_model, matching, zero_shot, itm_model]
    kinds.append(processor_only)
    return [(kind.__name__, kind()) for kind in (rng.choice(kinds) for _ in range(count))]


# -- PyTorch ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pt_service(small_models):
    return Service("pt", small_models)


def test_pytorch_service_shared_by_8_threads_40_calls_each(pt_service):
    calls = mixed_calls(pt_service, THREADS * 40, light=False)
    assert {name for name, _ in calls} >= {"caption_pipe", "caption_model", "vqa_pipe", "zero_shot", "processor_only"}
    check_concurrent(calls)
    assert pt_service.state() == pt_service.configs


# -- TensorFlow ---------------------------------------------------------------------------------------------


def _count_calls(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[int]:
    """Count calls of `module.name` (a function TensorFlow calls only while tracing)."""
    calls = [0]
    original = getattr(module, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def _tensorflow_service(small_models, monkeypatch, calls_per_thread: int) -> None:
    import blip_tf.captioning as tf_captioning
    import blip_tf.generation as tf_generation

    service = Service("tf", small_models)
    decoder_traces = _count_calls(monkeypatch, tf_generation, "start")  # patched where the loop looks it up
    encoder_traces = _count_calls(monkeypatch, tf_captioning, "image_features")
    # Eight threads ask at once for a shape nobody compiled yet: one trace of each function, one result.
    batch = service.processor(images=IMAGES[:2], return_tensors="np")
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns at every chance, as they do on more cores
    try:
        same = run_threads([lambda: service.caption.generate(batch["pixel_values"], max_new_tokens=3).numpy()] * 8)
    finally:
        sys.setswitchinterval(interval)
    assert decoder_traces[0] == 1 and encoder_traces[0] == 1
    for ids in same[1:]:
        np.testing.assert_array_equal(ids, same[0])

    calls = mixed_calls(service, THREADS * calls_per_thread, light=True)
    check_concurrent(calls)  # compiles the remaining shapes while running sequentially, then reuses them
    assert service.state() == service.configs
    for model, attribute in ((service.caption.text_decoder, "_blip_generate_functions"), (service.caption, None)):
        functions: FunctionCache = model.__dict__[attribute or "_blip_inference_functions"]
        assert set(functions.traces) == set(functions) and set(functions.traces.values()) == {1}, functions.traces
        assert functions.misses == len(functions) and functions.hits > 0


def test_tensorflow_service_shared_by_8_threads(small_models, monkeypatch):
    _tensorflow_service(small_models, monkeypatch, calls_per_thread=10)


@pytest.mark.slow  # 320 TensorFlow calls
def test_tensorflow_service_shared_by_8_threads_40_calls_each(small_models, monkeypatch):
    _tensorflow_service(small_models, monkeypatch, calls_per_thread=40)


# -- the races found, one by one ------------------------------------------------------------------------------


def test_function_cache_builds_each_key_once_and_stays_bounded():
    capacity = [4]
    cache = FunctionCache(lambda: capacity[0])
    built: list[str] = []

    def build(key: str) -> Callable[[], str]:
        built.append(key)
        time.sleep(0.01)  # a slow build: without the lock, the other threads would build the key too
        return lambda: key

    got = run_threads([lambda key=f"k{n % 4}": cache.get(key, lambda: build(key))() for n in range(64)])
    assert got == [f"k{n % 4}" for n in range(64)]
    assert sorted(built) == ["k0", "k1", "k2", "k3"] and cache.misses == 4 and cache.hits == 60
    capacity[0] = 2
    cache.get("k1", lambda: build("again"))
    cache.get("new", lambda: build("new"))
    assert list(cache) == ["k1", "new"] and built[-1] == "new"  # the least recently used went first


def test_tokenize_is_not_cut_by_another_threads_truncation():
    """The Rust backend holds truncation and padding settings that one call sets and resets around its batch;
    `tokenize` in another thread meanwhile was truncated to that call's 4 tokens."""
    tokenizer = BlipTokenizer(vocab_file=BUNDLED_VOCAB_FILE)
    want = tokenizer.tokenize(LONG)
    done = threading.Event()

    def truncating() -> None:
        while not done.is_set():
            tokenizer(["x y z w v u"] * 20, truncation=True, max_length=4, padding="max_length")

    other = threading.Thread(target=truncating)
    other.start()
    try:
        got = [tokenizer.tokenize(LONG) for _ in range(300)]
    finally:
        done.set()
        other.join()
    assert all(tokens == want for tokens in got)
    assert tokenizer._tokenizer.truncation is None and tokenizer._tokenizer.padding is None


@pytest.fixture(scope="module")
def short_position_captioner(tmp_path_factory):
    """A small PyTorch captioner with 8 positions: the pipeline's default 256 new tokens gets capped."""
    import torch

    import blip_torch

    folder = tmp_path_factory.mktemp("short_positions")
    torch.manual_seed(0)
    config = BlipConfig(**{**SMALL, "text_config": {**SMALL["text_config"], "max_position_embeddings": 8}})
    blip_torch.BlipForConditionalGeneration(config).save_pretrained(folder)
    BlipProcessor(BlipImageProcessor(size=48), BlipTokenizer(vocab_file=BUNDLED_VOCAB_FILE)).save_pretrained(folder)
    return folder


def test_pipeline_threads_leave_warning_filters_alone(short_position_captioner):
    """The pipeline hid the cap warning with `warnings.catch_warnings`, which swaps the process-wide filter
    list: threads entering and leaving it at once left an 'ignore' filter installed for good."""
    pipe = blip_core.pipeline("image-to-text", model=str(short_position_captioner), framework="pt")
    before = list(warnings.filters)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: more interleavings per call
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_concurrent([("caption", lambda image=image: pipe(image)) for image in IMAGES * 8])
            filters = list(warnings.filters)
    finally:
        sys.setswitchinterval(interval)
    assert not [w for w in caught if "generation capped" in str(w.message)]
    assert filters[0] == ("always", None, Warning, None, 0) and filters[1:] == before
    with pytest.warns(UserWarning, match="generation capped at 8 tokens"):  # still warned outside the pipeline
        batch = pipe.processor(images=IMAGES[0], return_tensors="pt")
        pipe.model.generate(**batch, max_new_tokens=20)
