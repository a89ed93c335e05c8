"""Hub errors for tests: `huggingface_hub` errors as its client raises them, and the check that an error is of
every type `transformers` 4.57.6 raised in the same case (tests/golden/hub_errors.json)."""

from __future__ import annotations

import builtins
import importlib
import inspect

from huggingface_hub import errors

from tests.helpers.golden import load_json

REPO = "Salesforce/blip-missing-for-tests"
REMOTE_ENTRY = getattr(errors, "RemoteEntryNotFoundError", errors.EntryNotFoundError)
# Where transformers 4.57.6 is wrong: a repo without config.json crashes it with an AttributeError.
BETTER_THAN_TRANSFORMERS = {"entry_not_found": (OSError, errors.EntryNotFoundError, FileNotFoundError)}


def hub_error(cls: type, status: int) -> Exception:
    """A huggingface_hub error as its client raises it (its HTTP errors need a response)."""
    if "response" not in inspect.signature(cls).parameters:
        return cls("mocked")
    http = importlib.import_module(errors.HfHubHTTPError.__mro__[1].__module__.partition(".")[0])
    request = http.Request("GET", f"https://huggingface.co/{REPO}/resolve/main/config.json")
    return cls(f"{status} Client Error (mocked)", response=http.Response(status, request=request))


def assert_types_of_transformers(error: BaseException, case: str) -> None:
    """`error` is an instance of every type transformers' error for `case` is, and chains the same cause."""
    record = load_json("hub_errors.json")["cases"][case]
    expected = BETTER_THAN_TRANSFORMERS.get(case) or [
        getattr(errors, name, None) or getattr(builtins, name) for name in record["types"]
    ]
    for cls in expected:
        assert isinstance(error, cls), f"{case}: {type(error).__name__} is not a {cls.__name__}"
    if record["cause"] is not None:
        assert isinstance(error.__cause__, getattr(errors, record["cause"])), f"{case}: cause {error.__cause__!r}"
