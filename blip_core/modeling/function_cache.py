"""A bounded, thread-safe cache of compiled functions (TensorFlow's graph and XLA functions).

A captioning service shares one model between threads. Each distinct key (options and input shapes)
must be built once, even when two threads ask for the same new key at the same moment, and the cache
must not grow without bound when requests bring ever new shapes. `FunctionCache` is a least recently
used mapping guarded by one lock; it also counts what it did (`hits`, `misses`, `traces`), so tests
and users can check that nothing was compiled twice. It touches no tensor: `blip_tf` fills it.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Any


class FunctionCache:
    """Key -> function, at most `capacity()` of them (the least recently used is dropped first).

    `capacity` is a callable so a module constant read at each insertion (and patched by tests) rules.
    Iteration yields the keys from least to most recently used.
    """

    def __init__(self, capacity: Callable[[], int]) -> None:
        self._capacity = capacity
        self._functions: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.traces: Counter[Hashable] = Counter()  # key -> times its Python function was traced

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """The function cached under `key`, made by `build()` (under the lock: only one thread builds it).

        `build` must be cheap (creating a `tf.function` traces nothing); tracing happens at the first
        call, which `tf.function` serialises itself.
        """
        with self._lock:
            function = self._functions.get(key)
            if function is not None:
                self._functions.move_to_end(key)
                self.hits += 1
                return function
            self.misses += 1
            function = self._functions[key] = build()
            while len(self._functions) > max(1, self._capacity()):
                self._functions.popitem(last=False)
            return function

    def count_trace(self, key: Hashable) -> None:
        """Record that the function under `key` was traced (call it from the traced Python function)."""
        with self._lock:
            self.traces[key] += 1

    def __len__(self) -> int:
        return len(self._functions)

    def __contains__(self, key: object) -> bool:
        return key in self._functions

    def __iter__(self) -> Iterator[Hashable]:
        with self._lock:
            return iter(list(self._functions))


def cache_on(owner: Any, attribute: str, capacity: Callable[[], int]) -> FunctionCache:
    """The `FunctionCache` kept in `owner.__dict__[attribute]`, made on first use.

    `dict.setdefault` is atomic, so threads racing to make it all get the same one.
    """
    cache = owner.__dict__.get(attribute)
    if cache is None:
        cache = owner.__dict__.setdefault(attribute, FunctionCache(capacity))
    return cache
