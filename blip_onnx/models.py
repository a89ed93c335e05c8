"""BLIP's task classes over the ONNX graphs of `blip-convert to-onnx`, with ONNX Runtime and NumPy only.

`OnnxBlipForConditionalGeneration`, `OnnxBlipForQuestionAnswering` and `OnnxBlipForImageTextRetrieval` take
and return NumPy arrays and are called like their `blip_torch` twins (`generate`, `model(...)`,
`get_image_features`, `get_text_features`); generation is `blip_core.generation.host` (the same options and,
on the same checkpoint, the same ids as `blip_torch`). No torch or TensorFlow is imported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from blip_core.config.configuration import BlipConfig
from blip_core.config.model_constants import CLS_TOKEN_ID
from blip_core.generation.host import empty_output, generate, transition_scores
from blip_core.generation.options import special_tokens
from blip_core.generation.prompts import prompt_rows
from blip_core.generation.sampling import check_sampling_seeds
from blip_core.generation.support import GenerationConfigMixin, attach_generation_config
from blip_core.io.hub import resolve_file
from blip_core.modeling.limits import check_pairing, check_text_length, check_token_ids
from blip_core.modeling.outputs import BlipImageTextMatchingModelOutput
from blip_onnx.layout import CLASS_OF_TASK, MANIFEST, read_manifest
from blip_onnx.runner import OnnxDecoderRunner
from blip_onnx.sessions import GraphSession, session_options

FLOAT_DTYPES = (None, "auto", "float32")


def as_array(value: Any, name: str, dtype: Any) -> np.ndarray:
    """A NumPy array (or torch/TF tensor, or nested list) as `dtype`.

    Raises:
        TypeError: `value` is not array-like.
    """
    if hasattr(value, "detach"):
        value = value.detach().cpu().float().numpy() if value.is_floating_point() else value.detach().cpu().numpy()
    elif hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be an array, got {type(value).__name__}: {err}") from None
    if array.dtype == object:
        raise TypeError(f"{name} must be a numeric array, got {type(value).__name__}")
    return np.ascontiguousarray(array.astype(dtype, copy=False))


def check_device(device: Any) -> None:
    """ONNX Runtime's CPU provider: None, -1, 0 (the pipeline default, which falls back to the CPU) or "cpu".

    Raises:
        ValueError: another device.
    """
    if device is None or device in (-1, 0) or str(device).lower() in ("cpu", "-1"):
        return
    raise ValueError(f"framework='onnx' runs on the CPU (ONNX Runtime's CPU provider); got device={device!r}")


class OnnxBlipPreTrainedModel(GenerationConfigMixin):
    """An exported folder's graphs in ONNX Runtime, with its config and generation settings."""

    task = ""

    @classmethod
    def can_generate(cls) -> bool:
        return False

    def __init__(self, folder: Path, manifest: dict[str, Any], config: BlipConfig, threads: int | None = None) -> None:
        self.folder, self.manifest, self.config = folder, manifest, config
        options = session_options(threads)
        layers = config.text_config.num_hidden_layers
        self.graphs = {
            name: GraphSession(folder, name, entry, layers, options) for name, entry in manifest["graphs"].items()
        }
        self.init_generation_config()

    @property
    def dtype(self) -> str:
        return "float32"

    @property
    def quantized(self) -> bool:
        return any(entry.get("dtype") == "int8" for entry in self.manifest["graphs"].values())

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, threads: int | None = None, **kwargs: Any
    ) -> Any:
        """Open an exported folder (or a Hub repo holding one): `threads` intra-op threads per graph.

        `dtype`/`torch_dtype` may be float32 or "auto" (the graphs' own), `device` the CPU; Hub options (`revision`,
        `cache_dir`, `local_files_only`, `token`) are passed on.

        Raises:
            OSError: not an exported folder (the message says how to write one).
            ValueError: a manifest of another task than this class's, a dtype other than float32, a device
                other than the CPU, a graph ONNX Runtime cannot load.
        """
        check_device(kwargs.pop("device", None))
        dtype = kwargs.pop("dtype", kwargs.pop("torch_dtype", None))
        if str(dtype).replace("torch.", "") not in [str(d) for d in FLOAT_DTYPES]:
            raise ValueError(f"ONNX exports run in float32 (or their int8 graphs); got dtype={dtype!r}")
        hub = {key: kwargs.pop(key) for key in ("revision", "cache_dir", "local_files_only", "token") if key in kwargs}
        if kwargs:
            raise TypeError(f"{cls.__name__}.from_pretrained got unexpected options {sorted(kwargs)}")
        folder = _local_folder(pretrained_model_name_or_path, hub)
        manifest = read_manifest(folder)
        if cls.task and manifest["task"] != cls.task:
            raise ValueError(
                f"{folder} holds a {manifest['task']!r} export ({manifest.get('architecture')}); "
                f"{cls.__name__} needs a {cls.task!r} one"
            )
        config = BlipConfig.from_pretrained(str(folder))
        model = cls(folder, manifest, config, threads)
        attach_generation_config(model, str(folder), {}, None, {})
        return model

    def _images(self, pixel_values: Any, interpolate_pos_encoding: bool = False) -> np.ndarray:
        """pixel_values as float32 (B, 3, S, S) at the exported size."""
        if pixel_values is None:
            raise ValueError(f"{type(self).__name__} needs pixel_values of shape (batch, 3, height, width)")
        if interpolate_pos_encoding:
            raise ValueError("interpolate_pos_encoding is not available in an ONNX export: its image size is fixed")
        pixels = as_array(pixel_values, "pixel_values", np.float32)
        size = self.config.vision_config.image_size
        if pixels.ndim != 4 or pixels.shape[1:] != (3, size, size):
            raise ValueError(
                f"pixel_values must have shape (batch, 3, {size}, {size}) for this export, got {pixels.shape}"
            )
        return pixels

    def compute_transition_scores(
        self, sequences: Any, scores: tuple, beam_indices: Any = None, normalize_logits: bool = False
    ) -> np.ndarray:
        """The score of each generated token when it was chosen, (rows, new tokens) float32."""
        vocab_size = self.config.text_config.vocab_size
        return transition_scores(sequences, scores, beam_indices, normalize_logits, vocab_size)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Copy the export (graphs, manifest, config, generation settings) into `save_directory`, each file
        written atomically; options of the trees' `save_pretrained` (`safe_serialization`, ...) change nothing."""
        import shutil

        from blip_core.io.atomic import atomic_path

        target = Path(save_directory)
        target.mkdir(parents=True, exist_ok=True)
        names = [entry["file"] for entry in self.manifest["graphs"].values()]
        names += [MANIFEST, "config.json", "generation_config.json"]
        for name in names:
            if (self.folder / name).is_file() and (self.folder / name).resolve() != (target / name).resolve():
                with atomic_path(target / name) as temporary:
                    shutil.copyfile(self.folder / name, temporary)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.folder}, graphs={sorted(self.graphs)})"


def _local_folder(name: str | os.PathLike, hub: dict[str, Any]) -> Path:
    """A local folder as is; a Hub repo id downloaded (its manifest, then the files the manifest names)."""
    if os.path.isdir(name):
        return Path(name)
    manifest_path = resolve_file(str(name), MANIFEST, **hub)
    folder = Path(manifest_path).parent
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    entries = (manifest.get("graphs") or {}).values()
    files = [entry.get("file") if isinstance(entry, dict) else None for entry in entries]
    for file in files:  # plain names only, checked before anything is downloaded (read_manifest checks the rest)
        if not isinstance(file, str) or Path(file).name != file:
            raise ValueError(f"{name}: {MANIFEST} names graph file {file!r}, not a plain file name")
        resolve_file(str(name), file, **hub)
    for extra in ("config.json", "generation_config.json"):
        resolve_file(str(name), extra, required=extra == "config.json", **hub)
    return folder


def token_ids(value: Any, name: str, vocab_size: int) -> np.ndarray:
    """Token ids (B, L) as int64, each in [0, vocab_size) (ONNX Runtime would fail inside a Gather).

    Raises:
        ValueError: not 2-D, or an id out of range.
    """
    ids = as_array(value, name, np.int64)
    if ids.ndim != 2:
        raise ValueError(f"{name} must have shape (batch, length), got {ids.shape}")
    check_token_ids(int(ids.min()) if ids.size else None, int(ids.max()) if ids.size else None, vocab_size, name)
    return ids


def paired(image_embeds: np.ndarray, texts: int) -> np.ndarray:
    """One image for all texts (`check_pairing`): its embeddings repeated per text, as the graphs pair row i
    with row i."""
    if image_embeds.shape[0] == 1 and texts > 1:
        return np.repeat(image_embeds, texts, axis=0)
    return image_embeds


class _Generating(OnnxBlipPreTrainedModel):
    """The shared half of captioning and VQA: the decoder graphs driven by the host loop."""

    @classmethod
    def can_generate(cls) -> bool:
        return True

    def _decode(self, rows: list[list[int]], states: np.ndarray, mask: np.ndarray | None, options, tokens):
        text = self.config.text_config
        runner = OnnxDecoderRunner(
            self.graphs["decoder"], self.graphs["decoder_cross"], states, mask, text.vocab_size, text.num_hidden_layers
        )
        return generate(runner, rows, options, tokens, text.max_position_embeddings, text.pad_token_id)


class OnnxBlipForConditionalGeneration(_Generating):
    """Image captioning in ONNX Runtime (`blip_torch.BlipForConditionalGeneration`'s `generate`)."""

    task = "caption"

    def generate(
        self,
        pixel_values: Any,
        input_ids: Any = None,
        attention_mask: Any = None,
        interpolate_pos_encoding: bool = False,
        **generate_kwargs: Any,
    ) -> Any:
        """Caption images: ids (batch * num_return_sequences, length) int64, BOS (and the prompt) first; with
        `return_dict_in_generate=True` an output of NumPy arrays. The options of `blip_torch`'s `generate`.

        Raises:
            ValueError: bad pixel_values or prompts, options out of range (messages name them).
        """
        options = self.generation_options(generate_kwargs, "onnx")
        text = self.config.text_config
        tokens = special_tokens(options, text)
        pixels = self._images(pixel_values, interpolate_pos_encoding)
        prompt = None if input_ids is None else token_ids(input_ids, "input_ids", text.vocab_size)
        mask = None if attention_mask is None else as_array(attention_mask, "attention_mask", np.int64)
        rows = prompt_rows(prompt, mask, pixels.shape[0], tokens.start, CLS_TOKEN_ID, text.sep_token_id)
        check_sampling_seeds(options.sampling_seeds, len(rows))
        for row in rows:
            options.check_room(len(row), text.max_position_embeddings)
        if not rows:
            return empty_output(options)
        states = self.graphs["vision_encoder"](pixel_values=pixels)["image_embeds"]
        return self._decode(rows, states, None, options, tokens)


class OnnxBlipForQuestionAnswering(_Generating):
    """Visual question answering in ONNX Runtime (`blip_torch.BlipForQuestionAnswering`'s `generate`)."""

    task = "vqa"

    def generate(
        self,
        input_ids: Any,
        pixel_values: Any,
        attention_mask: Any = None,
        interpolate_pos_encoding: bool = False,
        **generate_kwargs: Any,
    ) -> Any:
        """Answer questions (B, L) about images (B, 3, S, S): ids (B * num_return_sequences, length), BOS first.

        Raises:
            ValueError: a missing question, unpaired batches, bad shapes or options.
        """
        options = self.generation_options(generate_kwargs, "onnx")
        text = self.config.text_config
        tokens = special_tokens(options, text, text.bos_token_id)
        if input_ids is None:
            raise ValueError("BlipForQuestionAnswering needs input_ids (the question) and pixel_values")
        questions = token_ids(input_ids, "input_ids", text.vocab_size)
        pixels = self._images(pixel_values, interpolate_pos_encoding)
        check_pairing(pixels.shape[0], questions.shape[0])
        check_sampling_seeds(options.sampling_seeds, questions.shape[0], "questions")
        check_text_length(questions.shape[1], 0, text.max_position_embeddings)
        if not questions.shape[0]:
            return empty_output(options)
        mask = np.ones_like(questions)
        if attention_mask is not None:
            mask = as_array(attention_mask, "attention_mask", np.int64)
        states = self.graphs["vision_encoder"](pixel_values=pixels)["image_embeds"]
        states = paired(states, questions.shape[0])
        encoded = self.graphs["question_encoder"](input_ids=questions, attention_mask=mask, image_embeds=states)
        rows = [[tokens.start] for _ in range(questions.shape[0])]
        return self._decode(rows, encoded["question_embeds"], mask, options, tokens)


    def rank_answers(self, *args: Any, **kwargs: Any) -> Any:
        """Not in an export: ranking teacher-forces every candidate through the decoder with its loss, which the
        exported graphs do not compute.

        Raises:
            NotImplementedError: always (the message names what does it).
        """
        raise NotImplementedError(
            "answer ranking (rank_answers, candidate_answers=) is not exported to ONNX: run the checkpoint with "
            "framework='pt' or 'tf' for it; ONNX exports generate answers"
        )


class OnnxBlipForImageTextRetrieval(OnnxBlipPreTrainedModel):
    """Image-text matching (ITM) and contrastive embeddings (ITC) in ONNX Runtime."""

    task = "itm"

    def get_image_features(self, pixel_values: Any, interpolate_pos_encoding: bool = False) -> np.ndarray:
        """(B, E) float32 L2-normalised ITC image embeddings."""
        return self.graphs["image_encoder"](pixel_values=self._images(pixel_values, interpolate_pos_encoding))[
            "image_features"
        ]

    def get_text_features(self, input_ids: Any, attention_mask: Any = None) -> np.ndarray:
        """(B, E) float32 L2-normalised ITC text embeddings (the text encoder alone)."""
        ids, mask = self._texts(input_ids, attention_mask)
        return self.graphs["text_encoder"](input_ids=ids, attention_mask=mask)["text_features"]

    def _texts(self, input_ids: Any, attention_mask: Any) -> tuple[np.ndarray, np.ndarray]:
        if input_ids is None:
            raise ValueError("BlipForImageTextRetrieval needs input_ids and pixel_values")
        ids = token_ids(input_ids, "input_ids", self.config.text_config.vocab_size)
        check_text_length(ids.shape[1], 0, self.config.text_config.max_position_embeddings)
        mask = np.ones_like(ids) if attention_mask is None else as_array(attention_mask, "attention_mask", np.int64)
        return ids, mask

    def __call__(
        self,
        input_ids: Any = None,
        pixel_values: Any = None,
        use_itm_head: bool = True,
        attention_mask: Any = None,
        interpolate_pos_encoding: bool = False,
        return_dict: bool | None = None,
    ) -> BlipImageTextMatchingModelOutput:
        """`itm_score`: the ITM logits (B, 2) of (text, image) pairs, or with `use_itm_head=False` the ITC
        cosines (images, texts); `last_hidden_state` the image embeddings."""
        ids, mask = self._texts(input_ids, attention_mask)
        image = self.graphs["image_encoder"](pixel_values=self._images(pixel_values, interpolate_pos_encoding))
        if use_itm_head:
            check_pairing(image["image_embeds"].shape[0], ids.shape[0])
            states = paired(image["image_embeds"], ids.shape[0])
            score = self.graphs["itm"](input_ids=ids, attention_mask=mask, image_embeds=states)
            score = score["itm_logits"]
        else:
            text = self.graphs["text_encoder"](input_ids=ids, attention_mask=mask)["text_features"]
            score = image["image_features"] @ text.T
        return BlipImageTextMatchingModelOutput(itm_score=score, last_hidden_state=image["image_embeds"])

    forward = __call__


CLASSES = {
    CLASS_OF_TASK["caption"]: OnnxBlipForConditionalGeneration,
    CLASS_OF_TASK["vqa"]: OnnxBlipForQuestionAnswering,
    CLASS_OF_TASK["itm"]: OnnxBlipForImageTextRetrieval,
}
