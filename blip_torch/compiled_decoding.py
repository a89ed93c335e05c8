"""Decoding under `torch.compile`: when a model (or its text decoder) was compiled, `generate` runs each decoding
step as one compiled graph over a fixed-capacity ("static") self-attention cache.

Why a fixed capacity: the eager step (`decoding.decoder_step`) attends to the cache sliced to the positions filled
so far, a length that grows by one per token; a compiler specialises on it and would compile a new graph per
token. Here the step attends to the whole preallocated cache (`KVCache.capacity` positions, fixed for a call of
`generate`) with the unfilled positions masked, and writes the new keys/values at a position given as a tensor:
every step of a call has the same shapes, so one graph serves all of them (batch and capacity are marked dynamic,
so later calls with other batch sizes or lengths reuse it too). Masked positions add exp(-10000) = 0 to the
softmax, so the logits are the eager ones up to float rounding.

How a compile is noticed (nothing changes for models that were not compiled):
- `model.compile(...)` / `model.text_decoder.compile(...)`: the module's `_compiled_call_impl`;
- `model.forward = torch.compile(model.forward, ...)` (the `transformers` idiom): a compiled `forward` attribute;
- `model.text_decoder = torch.compile(model.text_decoder, ...)`: the decoder is an `OptimizedModule`;
- `compiled = torch.compile(model, ...)`: `compiled.generate` is the original module's method, which cannot see
  the wrapper; a module-registration hook notes every blip_torch module an `OptimizedModule` wraps (while that
  wrapper is alive, `model.generate` then decodes compiled as well).
The step is compiled with the user's own settings (backend, mode, fullgraph, dynamic) where they can be read.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from blip_torch.layers import Linear, additive_mask

if TYPE_CHECKING:
    from blip_torch.decoding import Decoding

_WRAPPED: weakref.WeakKeyDictionary[nn.Module, weakref.ref] = weakref.WeakKeyDictionary()
_DEFAULT_STEP: dict[str, Callable] = {}


def _is_optimized(module: Any) -> bool:
    """Whether `module` is `torch.compile`'s wrapper (checked by name: importing dynamo costs a second)."""
    kind = type(module)
    return kind.__name__ == "OptimizedModule" and kind.__module__.startswith("torch._dynamo")


def _note_wrapper(module: nn.Module, name: str, submodule: Any) -> None:
    """Global module-registration hook: remember the blip_torch modules (and their children) a wrapper compiles."""
    if name != "_orig_mod" or not _is_optimized(module) or not isinstance(submodule, nn.Module):
        return None
    if type(submodule).__module__.startswith("blip_torch."):
        wrapper = weakref.ref(module)
        for child in submodule.modules():
            _WRAPPED[child] = wrapper
    return None


torch.nn.modules.module.register_module_module_registration_hook(_note_wrapper)


def _closure_context(compiled: Callable) -> Callable | None:
    """The dynamo context a `torch.compile`d function was made with (its backend and options), if readable."""
    for cell in getattr(compiled, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if type(value).__name__.endswith("OptimizeContext") and callable(value):
            return value
    return None


def _is_compiled_function(value: Any) -> bool:
    return callable(value) and hasattr(value, "_torchdynamo_orig_callable")


def compile_context(module: nn.Module | None) -> Callable | None:
    """How `module` was compiled: a callable that compiles a function the same way (the user's dynamo context, or
    `torch.compile` with its defaults where the settings cannot be read); None when it was not compiled."""
    if module is None:
        return None
    if _is_optimized(module):
        return module.dynamo_ctx
    reference = _WRAPPED.get(module)
    wrapper = reference() if reference is not None else None
    if wrapper is not None:
        return wrapper.dynamo_ctx
    for compiled in (getattr(module, "_compiled_call_impl", None), module.__dict__.get("forward")):
        if _is_compiled_function(compiled):
            return _closure_context(compiled) or torch.compile
    return None


def compiled_step_for(owner: nn.Module | None, decoder: nn.Module) -> Callable | None:
    """The compiled step (`graph_step` compiled as the model or decoder was), or None when neither was compiled."""
    context = compile_context(owner) or compile_context(decoder)
    if context is None:
        return None
    if context is torch.compile:
        if "default" not in _DEFAULT_STEP:
            _DEFAULT_STEP["default"] = torch.compile(graph_step)
        return _DEFAULT_STEP["default"]
    step = getattr(context, "_blip_graph_step", None)
    if step is None:
        step = context(graph_step)
        try:  # kept with the context, so it lives as long as the user's compiled model
            context._blip_graph_step = step
        except AttributeError:
            pass
    return step


def prepare_cache(cache) -> None:
    """Zero the self-attention buffers past the filled positions: the compiled step reads the whole capacity
    (masked), and uninitialised memory could hold inf/NaN that a mask does not cancel."""
    for entry in cache.self_entries:
        if entry is not None:
            for buffer in entry:
                buffer[:, :, cache.length :].zero_()


def run_step(step: Callable, state: Decoding, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """One token per row (ids (N, 1) int64, positions (N, 1)) through the compiled `step`: logits (N, 1, V).

    The new keys/values are written into the cache at `cache.length`, which then advances by one.
    Raises ValueError when the cache is full.
    """
    import torch._dynamo

    from blip_torch.decoding import _cross_entries

    cache = state.cache
    if cache.length >= cache.capacity:
        raise ValueError(f"KV cache holds {cache.capacity} positions; position {cache.length + 1} does not fit")
    keys = [entry[0] for entry in cache.self_entries]
    values = [entry[1] for entry in cache.self_entries]
    cross = [_cross_entries(cache, index) for index in range(len(keys))]
    cross_mask = None
    if state.encoder_attention_mask is not None:  # in the dtype of the image keys/values
        cross_mask = additive_mask(state.encoder_attention_mask[:, None, None, :], cross[0][0].dtype)
    dynamic = [(ids, 0), (positions, 0), (state.key_mask, 0), (state.key_mask, 1), (cross_mask, 0), (cross_mask, 3)]
    dynamic += [(t, d) for t in (*keys, *values, *(t for pair in cross for t in pair)) for d in (0, 2)]
    for tensor, dim in dynamic:  # batch, capacity and image/question length: later calls reuse the graph
        if tensor is not None:
            torch._dynamo.maybe_mark_dynamic(tensor, dim)
    where = torch.tensor([cache.length], device=ids.device)
    logits = step(state.decoder, ids, positions, where, state.key_mask, keys, values, cross, cross_mask)
    cache.advance(1)
    return logits


def use_compiled_step(state: Decoding, step: Callable | None) -> None:
    """Make `state` decode through the compiled `step` (`compiled_step_for`); None leaves it eager. Called once per
    `generate`, after the prompts filled the cache; a decoder in training mode stays eager (dropout)."""
    if step is not None and not state.decoder.training:
        prepare_cache(state.cache)
        state.compiled = functools.partial(run_step, step)


def eager_module(decoder: nn.Module) -> nn.Module:
    """The module `torch.compile(decoder)` wraps (the decoding state reads its layers), or `decoder` itself."""
    return decoder._orig_mod if _is_optimized(decoder) else decoder


def eager_call(decoder: nn.Module) -> Callable:
    """`decoder`'s call without a `decoder.compile()`: the prompt pass runs once per `generate`, eagerly (a compiled
    one would recompile per prompt length, and forward's input checks are data-dependent)."""
    if getattr(decoder, "_compiled_call_impl", None) is not None:
        return decoder._call_impl
    return decoder


def graph_step(
    decoder: nn.Module,
    ids: torch.Tensor,
    positions: torch.Tensor,
    where: torch.Tensor,
    key_mask: torch.Tensor | None,
    keys: list[torch.Tensor],
    values: list[torch.Tensor],
    cross: list[tuple[torch.Tensor, torch.Tensor]],
    cross_mask: torch.Tensor | None,
) -> torch.Tensor:
    """The decoder for one token per row over the whole cache: logits (N, 1, V) in the model's dtype.

    ids, positions (N, 1) int64; where (1,) int64, the cache position the new token takes; key_mask (N, C) 0/1 or
    None; keys/values per layer (N, H, C, D), written in place at `where`; cross per layer the image keys/values
    (N / group, H, S, D); cross_mask the additive (B, 1, 1, S) image mask or None. Plain tensor operations only,
    so it traces as one graph (no data-dependent Python).
    """
    bert = decoder.bert
    embeddings = bert.embeddings
    dtype = embeddings.word_embeddings.weight.dtype
    hidden = embeddings.word_embeddings.weight[ids] + embeddings.position_embeddings.weight[positions]
    hidden = _norm(hidden, embeddings.LayerNorm)
    keep = torch.arange(keys[0].shape[2], device=ids.device)[None, :] <= where  # (1, C): filled so far
    if key_mask is not None:
        keep = keep & key_mask.bool()
    self_mask = additive_mask(keep[:, None, None, :], dtype)
    for index, layer in enumerate(bert.encoder.layer):
        attention = layer.attention.self
        query = attention._heads(_linear(attention.query, hidden))
        keys[index].index_copy_(2, where, attention._heads(_linear(attention.key, hidden)))
        values[index].index_copy_(2, where, attention._heads(_linear(attention.value, hidden)))
        context = nn.functional.scaled_dot_product_attention(query, keys[index], values[index], attn_mask=self_mask)
        hidden = _residual_norm(context, hidden, layer.attention.output)
        cross_attention = layer.crossattention.self
        query = cross_attention._heads(_linear(cross_attention.query, hidden))
        context = _grouped_attention(query, *cross[index], cross_mask).to(dtype)
        hidden = _residual_norm(context, hidden, layer.crossattention.output)
        inner = layer.intermediate.intermediate_act_fn(_linear(layer.intermediate.dense, hidden))
        hidden = _norm(_linear(layer.output.dense, inner) + hidden, layer.output.LayerNorm)
    predictions = decoder.cls.predictions
    transform = predictions.transform
    hidden = _norm(transform.transform_act_fn(_linear(transform.dense, hidden)), transform.LayerNorm)
    return _linear(predictions.decoder, hidden)


def _grouped_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """Query rows (B*G, H, 1, D) against keys/values (B, H, S, D) shared by each G consecutive rows (beams)."""
    batch, heads, length, size = query.shape
    group = batch // key.shape[0]
    folded = query.to(key.dtype).view(key.shape[0], group, heads, length, size).transpose(1, 2)
    folded = folded.reshape(key.shape[0], heads, group * length, size)
    context = nn.functional.scaled_dot_product_attention(folded, key, value, attn_mask=mask)
    context = context.view(key.shape[0], heads, group, length, size).transpose(1, 2)
    return context.reshape(batch, heads, length, size)


def _linear(layer: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """A linear layer as the compiler sees best: `F.linear` for float layers (the compiler picks the kernels),
    the layer's own forward for others (int8)."""
    if type(layer) in (Linear, nn.Linear):
        return nn.functional.linear(hidden, layer.weight, layer.bias)
    return layer(hidden)


def _norm(hidden: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    return nn.functional.layer_norm(hidden, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _residual_norm(context: torch.Tensor, hidden: torch.Tensor, output: nn.Module) -> torch.Tensor:
    """Heads (N, H, T, D) merged, projected, added to the residual and normalised (BlipTextSelfOutput)."""
    batch, heads, length, size = context.shape
    merged = context.transpose(1, 2).reshape(batch, length, heads * size)
    return _norm(_linear(output.dense, merged) + hidden, output.LayerNorm)
