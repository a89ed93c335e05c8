"""Added tokens in the forms `transformers` and the Hub's files use (strings, `AddedToken`s, the
`{"content": ..., "special": ...}` entries of `tokenizer_config.json`), for `BlipTokenizer`."""

from __future__ import annotations

import warnings
from typing import Any

from tokenizers import AddedToken, Tokenizer

__all__ = ["AddedToken", "content_of", "restore_added_tokens", "token_dict", "token_list"]

ADDED_TOKEN_FLAGS = ("lstrip", "normalized", "rstrip", "single_word", "special")


def content_of(token: Any, name: str) -> str | None:
    """A special token given as a string, an AddedToken or the files' {"content": ...} form."""
    if token is None or isinstance(token, str):
        return token
    if isinstance(token, AddedToken):
        return token.content
    if isinstance(token, dict) and isinstance(token.get("content"), str):
        return token["content"]
    raise ValueError(f"{name} must be a string or an AddedToken, got {token!r:.80}")


def token_list(tokens: Any, name: str, special: bool = False) -> list[AddedToken | str]:
    """Tokens as a list; with `special`, strings become special, unnormalized AddedTokens (`transformers`' rule)."""
    items = [tokens] if isinstance(tokens, (str, AddedToken)) else tokens
    if not isinstance(items, (list, tuple)) or not all(isinstance(t, (str, AddedToken)) for t in items):
        raise TypeError(f"{name} must be a str, an AddedToken or a list of them, got {tokens!r:.80}")
    if not special:
        return list(items)
    return [AddedToken(t, special=True, normalized=False) if isinstance(t, str) else t for t in items]


def token_dict(token: AddedToken) -> dict[str, Any]:
    """An AddedToken as the `added_tokens_decoder` entries of `tokenizer_config.json`."""
    return {"content": token.content, **{flag: getattr(token, flag) for flag in ADDED_TOKEN_FLAGS}}


def restore_added_tokens(tokenizer: Tokenizer, decoder: dict[str, Any]) -> None:
    """Added tokens of a `tokenizer_config.json` (`added_tokens_decoder`, id -> token) onto a tokenizer built
    from `vocab.txt`, in id order; tokens of the vocabulary itself keep their ids."""
    if not isinstance(decoder, dict) or not all(isinstance(k, (str, int)) and str(k).isdigit() for k in decoder):
        raise ValueError(f"added_tokens_decoder must map token ids to tokens, got {decoder!r:.80}")
    entries = sorted(((int(key), value) for key, value in decoder.items()), key=lambda item: item[0])
    for index, entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("content"), str):
            raise ValueError(f"added_tokens_decoder[{index}] must be {{'content': ..., 'special': ...}}, got {entry!r}")
        flags = {flag: bool(entry[flag]) for flag in ADDED_TOKEN_FLAGS if flag in entry}
        token = AddedToken(entry["content"], **flags)
        (tokenizer.add_special_tokens if flags.get("special") else tokenizer.add_tokens)([token])
        if tokenizer.token_to_id(entry["content"]) != index:
            warnings.warn(
                f"added token {entry['content']!r} is {index} in the tokenizer config but became "
                f"{tokenizer.token_to_id(entry['content'])} (the ids are not contiguous)",
                stacklevel=4,
            )
