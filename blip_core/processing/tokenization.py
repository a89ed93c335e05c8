"""`BlipTokenizer`: BERT-uncased WordPiece on the `tokenizers` library.

Ids equal `transformers`' `BertTokenizerFast` on the Hub files. Unlike it,
`[DEC]` (30522, the BOS of generation) and `[ENC]` (30523) are known special
tokens, so decoding generated ids neither drops nor mangles them, and tokens
added later (`add_tokens`, `add_special_tokens`) get ids from 30524 on, after
them, so `model.resize_token_embeddings(len(tokenizer))` never gives a new
token the row of [DEC] or [ENC].
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from blip_core.io.atomic import atomic_write_text
from blip_core.io.hub_errors import HubFileNotFoundError
from blip_core.io.hub_upload import PushToHubMixin
from blip_core.processing.added_tokens import content_of, restore_added_tokens, token_dict, token_list
from blip_core.processing.text_batching import _BACKEND_LOCK, TextEncodingMixin, check_side

VOCAB_NAME = "vocab.txt"
# bert-base-uncased's vocabulary, which every BLIP checkpoint uses; shipped for models saved without one.
BUNDLED_VOCAB_FILE = Path(__file__).resolve().parents[1] / "data" / "vocab.txt"
TOKENIZER_FILE_NAME = "tokenizer.json"
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_NAME = "special_tokens_map.json"

ADDED_TOKENS_NAME = "added_tokens.json"

# The special-token attributes of `transformers` tokenizers, in its order, with BLIP's values.
SPECIAL_TOKENS: dict[str, str | None] = {
    "bos_token": "[DEC]",
    "eos_token": None,  # as transformers: BLIP generation ends on [SEP] (the model's sep_token_id) anyway
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}
ADDITIONAL_SPECIAL_TOKENS = "additional_special_tokens"
BLIP_EXTRA_TOKENS = ("[DEC]", "[ENC]")  # appended after the BERT vocabulary: 30522, 30523
_CLEANUPS = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)


# The largest vocab.txt / tokenizer.json read (BERT's are 0.2 / 0.7 MB; the largest Hub tokenizers ~20 MB).
MAX_TOKENIZER_FILE_BYTES = 64 * 2**20


def check_file_size(path: Path, what: str) -> None:
    """Raises ValueError naming `path` when it is larger than `MAX_TOKENIZER_FILE_BYTES` (not read)."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return  # the reader names the file when it cannot open it
    if size > MAX_TOKENIZER_FILE_BYTES:
        raise ValueError(f"{what} {path} is {size} bytes, above the limit of {MAX_TOKENIZER_FILE_BYTES // 2**20} MiB")


def read_vocab(path: Path) -> dict[str, int]:
    """A `vocab.txt` as token -> id (id = line number), naming the file in errors."""
    check_file_size(path, "vocabulary file")
    try:
        lines = Path(path).read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read vocabulary file {path}: {err}") from None
    if lines and lines[-1] == "":
        lines.pop()
    vocab: dict[str, int] = {}
    for token in lines:
        vocab.setdefault(token, len(vocab))
    if "[UNK]" not in vocab:
        raise ValueError(f"vocabulary file {path} has no [UNK] token; expected a BERT vocab.txt")
    return vocab


def build_bert_tokenizer(vocab: dict[str, int], do_lower_case: bool = True) -> Tokenizer:
    """The Hub's `tokenizer.json` pipeline for BERT, built from a vocabulary."""
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=do_lower_case
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    present = [token for token in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") if token in vocab]
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in present])
    if "[CLS]" in vocab and "[SEP]" in vocab:  # our encoding adds them itself; a saved tokenizer.json must too
        special = [("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=special
        )
    return tokenizer


class TokenizerFilesNotFoundError(HubFileNotFoundError, ValueError):
    """A folder or repo without `tokenizer.json` or `vocab.txt` (an `OSError` as in `transformers`)."""


class BlipTokenizer(TextEncodingMixin, PushToHubMixin):
    """BLIP's tokenizer (`transformers.BertTokenizerFast` on the Hub's BLIP files): `__call__`, `encode`,
    `encode_plus`, `batch_encode_plus`, `pad` (`blip_core.processing.text_batching`), decoding, vocabulary growth,
    files.

    >>> tokenizer = BlipTokenizer.from_pretrained("tests/fixtures/tokenizer")  # doctest: +SKIP
    >>> tokenizer("a picture of")["input_ids"]  # doctest: +SKIP
    [101, 1037, 3861, 1997, 102]
    """

    def __init__(
        self,
        vocab_file: str | os.PathLike | None = None,
        tokenizer_file: str | os.PathLike | None = None,
        do_lower_case: bool = True,
        model_max_length: int = 512,
        padding_side: str = "right",
        truncation_side: str = "right",
        clean_up_tokenization_spaces: bool = True,
        model_input_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self._special_tokens = {
            name: content_of(kwargs.pop(name, default), name) for name, default in SPECIAL_TOKENS.items()
        }
        additional = kwargs.pop(ADDITIONAL_SPECIAL_TOKENS, None)
        self._additional = (
            ["[ENC]"] if additional is None else [content_of(t, ADDITIONAL_SPECIAL_TOKENS) for t in additional]
        )
        added_tokens_decoder = kwargs.pop("added_tokens_decoder", None)
        self.name_or_path = str(kwargs.pop("name_or_path", ""))
        self.chat_template = kwargs.pop("chat_template", None)
        if tokenizer_file is not None:
            check_file_size(Path(tokenizer_file), "tokenizer file")
            try:
                self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
            except Exception as err:  # tokenizers raises bare Exceptions
                raise ValueError(f"cannot read tokenizer file {tokenizer_file}: {err}") from None
        elif vocab_file is not None:
            self._tokenizer = build_bert_tokenizer(read_vocab(Path(vocab_file)), do_lower_case)
            restore_added_tokens(self._tokenizer, added_tokens_decoder or {})
        else:
            raise ValueError("BlipTokenizer needs vocab_file (vocab.txt) or tokenizer_file (tokenizer.json)")
        self._tokenizer.no_truncation()  # every call sets its own truncation and padding (text_batching)
        self._tokenizer.no_padding()
        self.base_vocab_size = self._tokenizer.get_vocab_size(with_added_tokens=False)
        self._add_missing_special_tokens()
        self.do_lower_case = do_lower_case
        if isinstance(model_max_length, bool) or not isinstance(model_max_length, (int, float, type(None))):
            raise ValueError(f"model_max_length must be a number, got {model_max_length!r:.60}")
        # transformers writes 10**30 for "no limit" (and 1e30 as a float): BLIP's models take 512
        bounded = model_max_length is not None and 0 < model_max_length < 10**9  # NaN fails this too
        self.model_max_length = int(model_max_length) if bounded else 512
        self.padding_side = check_side(padding_side, "padding_side")
        self.truncation_side = check_side(truncation_side, "truncation_side")
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        names = ["input_ids", "attention_mask"] if model_input_names is None else model_input_names
        if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
            raise ValueError(f"model_input_names must be a non-empty list of strings, got {model_input_names!r:.60}")
        self.model_input_names = list(names)
        self.init_kwargs = {k: v for k, v in kwargs.items() if not k.endswith("_token")}

    def _add_missing_special_tokens(self) -> None:
        """Special tokens the files name but the vocabulary lacks are added, as `transformers` does; [DEC]
        and [ENC] always exist. A file whose own added tokens hold id 30522 pushes [DEC] elsewhere: warned."""
        wanted = [*(t for t in self._special_tokens.values() if t), *self._additional, *BLIP_EXTRA_TOKENS]
        missing = [token for token in dict.fromkeys(wanted) if self._tokenizer.token_to_id(token) is None]
        self._tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in missing])
        decoder_start = self._tokenizer.token_to_id("[DEC]")
        if "[DEC]" in missing and decoder_start != self.base_vocab_size:
            taken = self._tokenizer.get_added_tokens_decoder()[self.base_vocab_size].content
            warnings.warn(
                f"the tokenizer files give id {self.base_vocab_size} to {taken!r}, the id BLIP models use for [DEC] "
                f"(their bos_token_id); [DEC] became {decoder_start}. Tokens added with transformers' tokenizer "
                "collide with [DEC]/[ENC]: add them to a BlipTokenizer instead",
                stacklevel=3,
            )

    # -- special tokens -----------------------------------------------------------

    def _token_id(self, name: str) -> int | None:
        token = self._special_tokens[name]
        return None if token is None else self._tokenizer.token_to_id(token)

    pad_token_id = property(lambda self: self._token_id("pad_token"))
    unk_token_id = property(lambda self: self._token_id("unk_token"))
    cls_token_id = property(lambda self: self._token_id("cls_token"))
    sep_token_id = property(lambda self: self._token_id("sep_token"))
    mask_token_id = property(lambda self: self._token_id("mask_token"))
    bos_token_id = property(lambda self: self._token_id("bos_token"))
    pad_token = property(lambda self: self._special_tokens["pad_token"])
    sep_token = property(lambda self: self._special_tokens["sep_token"])
    cls_token = property(lambda self: self._special_tokens["cls_token"])
    unk_token = property(lambda self: self._special_tokens["unk_token"])
    mask_token = property(lambda self: self._special_tokens["mask_token"])
    bos_token = property(lambda self: self._special_tokens["bos_token"])
    eos_token = property(lambda self: self._special_tokens["eos_token"])
    eos_token_id = property(lambda self: self._token_id("eos_token"))  # None unless set, as in transformers
    is_fast = True

    @property
    def additional_special_tokens(self) -> list[str]:
        return list(self._additional)

    @property
    def additional_special_tokens_ids(self) -> list[int]:
        return [self._tokenizer.token_to_id(token) for token in self._additional]

    @property
    def special_tokens_map(self) -> dict[str, Any]:
        """Special-token attribute -> token, as `transformers` reports them (unset ones left out)."""
        found: dict[str, Any] = {name: token for name, token in self._special_tokens.items() if token}
        return {**found, ADDITIONAL_SPECIAL_TOKENS: list(self._additional)} if self._additional else found

    @property
    def added_tokens_decoder(self) -> dict[int, AddedToken]:
        """id -> AddedToken for every added token (the BERT specials, [DEC], [ENC] and yours)."""
        return dict(sorted(self._tokenizer.get_added_tokens_decoder().items()))

    @property
    def added_tokens_encoder(self) -> dict[str, int]:
        return {token.content: index for index, token in self.added_tokens_decoder.items()}

    def get_added_vocab(self) -> dict[str, int]:
        """Added token -> id, as `transformers`' `get_added_vocab`."""
        return self.added_tokens_encoder

    # -- growing the vocabulary -----------------------------------------------------

    def add_tokens(
        self, new_tokens: str | AddedToken | Sequence[str | AddedToken], special_tokens: bool = False
    ) -> int:
        """Add tokens (strings or `AddedToken`s) with ids from `len(self)` on; returns how many the vocabulary
        took (as `transformers`: tokens already added are not counted again). Strings become normalized,
        non-special tokens, or special ones with `special_tokens=True`. Raises TypeError for other types."""
        tokens = token_list(new_tokens, "new_tokens")
        if not tokens:
            return 0
        with _BACKEND_LOCK:  # not while another thread's encode (which releases the GIL) holds the backend
            if special_tokens:
                return self._tokenizer.add_special_tokens(tokens)
            return self._tokenizer.add_tokens(tokens)

    def add_special_tokens(
        self, special_tokens_dict: dict[str, Any], replace_additional_special_tokens: bool = True
    ) -> int:
        """Set special-token attributes (`bos_token`, ..., `additional_special_tokens`) and add the tokens the
        vocabulary lacks; returns how many it took. Raises ValueError for an unknown key or a bad value."""
        if not special_tokens_dict:
            return 0
        to_add: list[AddedToken] = []
        for key, value in special_tokens_dict.items():
            if key == ADDITIONAL_SPECIAL_TOKENS:
                if not isinstance(value, (list, tuple)):
                    raise ValueError(f"{key} must be a list of str or AddedToken, got {type(value).__name__}")
                tokens = token_list(value, key, special=True)
                fresh = [t for t in tokens if replace_additional_special_tokens or t.content not in self._additional]
                if replace_additional_special_tokens and fresh:
                    self._additional = [t.content for t in fresh]
                else:
                    self._additional += [t.content for t in fresh]
                to_add += fresh
            elif key in SPECIAL_TOKENS:
                if not isinstance(value, (str, AddedToken)):
                    raise ValueError(f"{key} must be a str or an AddedToken, got {type(value).__name__}")
                token = token_list(value, key, special=True)[0]
                self._special_tokens[key] = token.content
                to_add.append(token)
            else:
                known = ", ".join([*SPECIAL_TOKENS, ADDITIONAL_SPECIAL_TOKENS])
                raise ValueError(f"{key!r} is not a special-token attribute; expected one of {known}")
        return self.add_tokens(to_add, special_tokens=True)

    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary, without added tokens (as in `transformers`)."""
        return self.base_vocab_size

    @property
    def all_special_tokens(self) -> list[str]:
        """The special-token attributes' tokens, then the additional ones, each once (`transformers`' order)."""
        tokens = [token for token in self._special_tokens.values() if token] + self._additional
        return list(dict.fromkeys(tokens))

    @property
    def all_special_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(token) for token in self.all_special_tokens]

    def apply_chat_template(self, *args: Any, **kwargs: Any) -> Any:
        """BLIP's tokenizer has no chat template: a ValueError, as in `transformers`.

        Raises:
            ValueError: always, unless a `chat_template` was given (not supported here either).
        """
        raise ValueError(
            "Cannot use chat template functions because tokenizer.chat_template is not set and no template "
            "argument was passed! BLIP is not a chat model: pass the text (a prompt or a question) directly."
        )

    def __len__(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self._tokenizer.get_vocab(with_added_tokens=True)

    # -- encoding -----------------------------------------------------------------

    def tokenize(self, text: str) -> list[str]:
        text = _check_text(text, "text")
        with _BACKEND_LOCK:  # another thread's call sets truncation and padding on the shared backend meanwhile
            return self._tokenizer.encode(text, add_special_tokens=False).tokens

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        if isinstance(tokens, str):
            found = self._tokenizer.token_to_id(tokens)
            return self.unk_token_id if found is None else found
        return [self.convert_tokens_to_ids(token) for token in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int], skip_special_tokens: bool = False) -> str | list[str]:
        """The token of each id; None for an id beyond the vocabulary (as the backend answers).

        Raises:
            TypeError: ids that are not integers. ValueError: a negative id.
        """
        if isinstance(ids, (int, np.integer)) and not isinstance(ids, bool):
            return self._token_of(check_token_ids([ids], "ids")[0])
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._token_of(i) for i in check_token_ids(ids, "ids") if i not in special]

    def _token_of(self, index: int) -> str | None:
        return self._tokenizer.id_to_token(index) if index < len(self) else None

    # -- decoding -----------------------------------------------------------------

    def decode(
        self,
        token_ids: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> str:
        ids = check_token_ids(token_ids, "token_ids")
        text = self._decode_ids(ids, skip_special_tokens)
        cleanup = (
            self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
        )
        if cleanup:
            for before, after in _CLEANUPS:
                text = text.replace(before, after)
        return text

    def _decode_ids(self, ids: list[int], skip_special_tokens: bool) -> str:
        """The backend's decode, except that added tokens read as written ("NewWord"): `tokenizers` >= 0.23
        returns normalized tokens in their normalized form ("newword"), older versions and `transformers` don't."""
        added = self._tokenizer.get_added_tokens_decoder()
        tokens = []
        for index in ids:
            token = added.get(index)
            if token is None:
                text = self._token_of(index)
                if text is not None:  # unknown ids are dropped, as the backend does
                    tokens.append(text)
            elif not (skip_special_tokens and token.special):
                tokens.append(token.content)
        return self._tokenizer.decoder.decode(tokens)

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = False, **kwargs: Any) -> list[str]:
        rows = _to_numpy(sequences)
        if isinstance(rows, np.ndarray) and rows.ndim == 1:
            rows = rows[None]
        return [self.decode(row, skip_special_tokens=skip_special_tokens, **kwargs) for row in rows]

    # -- files --------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> BlipTokenizer:
        """Load from a folder or Hub id: `tokenizer.json` if present, else `vocab.txt`."""
        from blip_core.io.hub import resolve_file, split_hub_options

        options, kwargs = split_hub_options(kwargs)
        source = pretrained_model_name_or_path
        config_path = resolve_file(source, TOKENIZER_CONFIG_NAME, required=False, **options)
        config = _read_json(config_path) if config_path else {}
        tokenizer_file = resolve_file(source, TOKENIZER_FILE_NAME, required=False, **options)
        vocab_file = None if tokenizer_file else resolve_file(source, VOCAB_NAME, required=False, **options)
        if tokenizer_file is None and vocab_file is None:
            raise TokenizerFilesNotFoundError(f"no {TOKENIZER_FILE_NAME} or {VOCAB_NAME} found in {source}")
        map_path = resolve_file(source, SPECIAL_TOKENS_MAP_NAME, required=False, **options)
        special_map = _read_json(map_path) if map_path else {}
        ignored = ("tokenizer_class", "tokenizer_file", "vocab_file", "name_or_path")
        settings = {k: v for k, v in config.items() if k not in ignored}
        for name in (*SPECIAL_TOKENS, ADDITIONAL_SPECIAL_TOKENS):  # the map fills what the config lacks
            if settings.get(name) is None and special_map.get(name) is not None:
                settings[name] = special_map[name]
        try:
            tokenizer = cls(vocab_file=vocab_file, tokenizer_file=tokenizer_file, **{**settings, **kwargs})
        except (ValueError, TypeError) as err:  # the same type, naming the files the settings came from
            files = ", ".join(str(p) for p in (config_path, map_path) if p) or str(source)
            raise (TypeError if isinstance(err, TypeError) else ValueError)(f"{files}: {err}") from None
        tokenizer.name_or_path = str(source)
        return tokenizer

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        legacy_format: bool | None = None,
        filename_prefix: str | None = None,
        push_to_hub: bool = False,
        **kwargs: Any,
    ) -> list[Path]:
        """Write the Hub's tokenizer file set: tokenizer.json, vocab.txt, the two configs and added_tokens.json,
        added tokens included, so `transformers`' `BertTokenizerFast` (and `BertTokenizer`) read the same ids."""
        from blip_core.io.hub_upload import check_save_kwargs

        check_save_kwargs("BlipTokenizer", push_to_hub, kwargs)  # legacy_format: both formats are always written
        if filename_prefix is not None:
            raise ValueError("BlipTokenizer.save_pretrained: filename_prefix is not supported (the Hub's file names)")
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        vocab = self._tokenizer.get_vocab(with_added_tokens=False)
        vocab_text = "".join(token + "\n" for token, _ in sorted(vocab.items(), key=lambda item: item[1]))
        added = self.added_tokens_decoder
        config = {
            **self.init_kwargs,
            **self.special_tokens_map,
            "added_tokens_decoder": {str(index): token_dict(token) for index, token in added.items()},
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "do_lower_case": self.do_lower_case,
            "model_input_names": self.model_input_names,
            "model_max_length": self.model_max_length,
            "padding_side": self.padding_side,
            "truncation_side": self.truncation_side,
            "tokenizer_class": "BertTokenizer",
        }
        beyond = {token.content: index for index, token in added.items() if index >= self.base_vocab_size}
        files = {
            TOKENIZER_FILE_NAME: self._tokenizer.to_str(pretty=True),
            VOCAB_NAME: vocab_text,
            TOKENIZER_CONFIG_NAME: json.dumps(dict(sorted(config.items())), indent=2) + "\n",
            SPECIAL_TOKENS_MAP_NAME: json.dumps(self.special_tokens_map, indent=2) + "\n",
            ADDED_TOKENS_NAME: json.dumps(beyond, indent=2, ensure_ascii=False) + "\n",
        }
        for name, text in files.items():
            atomic_write_text(directory / name, text)
        return [directory / name for name in files]


def _check_text(text: Any, name: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a string or a list of strings, got {type(text).__name__}")
    return text


def check_token_ids(token_ids: Any, name: str) -> list[int]:
    """Token ids (an int, a list, an array or tensor of any shape, flattened) as Python ints, unbounded:
    ids beyond the vocabulary are the caller's to drop.

    Raises:
        TypeError: values that are not integers (floats, strings, None, mappings).
        ValueError: a ragged nesting of lists; a negative id.
    """
    values = _to_numpy(token_ids)
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool):
        values = [values]
    if not isinstance(values, (list, tuple, np.ndarray)):
        raise TypeError(f"{name} must be an int, a list of ints, an array or a tensor, got {type(token_ids).__name__}")
    try:
        array = np.asarray(values, dtype=object if isinstance(values, (list, tuple)) else None)
    except ValueError:
        raise ValueError(
            f"{name} must be a list of ints (or equal-length lists of them), got a ragged nesting"
        ) from None
    if array.dtype == object and array.size and isinstance(array.flat[0], (list, tuple)):
        raise ValueError(f"{name} must be a list of ints (or equal-length lists of them), got a ragged nesting")
    ids = array.reshape(-1).tolist()
    wrong = [i for i in ids[:1] if array.dtype.kind in "fcbUSV"]
    wrong += [i for i in ids if isinstance(i, bool) or not isinstance(i, (int, np.integer))][:1]
    if wrong:
        raise TypeError(f"{name} must be integers, got {wrong[0]!r:.40} ({type(wrong[0]).__name__})")
    ids = [int(i) for i in ids]
    if ids and min(ids) < 0:
        raise ValueError(f"{name} must be non-negative token ids, got {min(ids)}")
    return ids


def _to_numpy(values: Any) -> Any:
    if hasattr(values, "detach"):
        return values.detach().cpu().numpy()
    if hasattr(values, "numpy") and not isinstance(values, np.ndarray):
        return values.numpy()
    return values


def _read_json(path: Path) -> dict[str, Any]:
    from blip_core.config.json_files import read_config_json

    return read_config_json(path)
