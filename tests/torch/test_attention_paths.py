"""`blip_torch.layers.attend` chooses its kernel by the CPU and the shape: long bfloat16 attention on a CPU with
bfloat16 units runs as three products (faster than PyTorch's fused CPU kernel there), elsewhere the fused kernel.
Both give float32's attention of the same inputs to bfloat16 precision; the CPU is simulated, so every machine
runs both paths."""

from __future__ import annotations

import pytest
import torch

from blip_torch import layers


def _inputs(rows: int, masked: bool):
    generator = torch.Generator().manual_seed(rows)
    query, key, value = (torch.randn(2, 3, rows, 16, generator=generator).bfloat16() for _ in range(3))
    mask = None
    if masked:
        keep = (torch.rand(2, 1, 1, rows, generator=generator) > 0.2).long()
        mask = layers.additive_mask(keep, torch.bfloat16)
    return query, key, value, mask


def _reference(query, key, value, mask) -> torch.Tensor:
    """float32 attention of the same (bfloat16-valued) inputs."""
    scores = query.float() @ key.float().transpose(-1, -2) * query.shape[-1] ** -0.5
    if mask is not None:
        scores = scores + mask.float()
    return torch.softmax(scores, -1) @ value.float()


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("bf16_units", [True, False], ids=["bf16 units", "emulated"])
def test_long_bf16_attention_paths_agree_with_float32(bf16_units, masked, monkeypatch) -> None:
    monkeypatch.setattr(layers, "cpu_has_low_precision_units", lambda: bf16_units)
    fused = torch.nn.functional.scaled_dot_product_attention
    calls = []
    monkeypatch.setattr(
        torch.nn.functional, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or fused(*a, **k)
    )
    query, key, value, mask = _inputs(layers.LONG_ATTENTION_ROWS + 44, masked)
    with torch.no_grad():
        context, weights = layers.attend(query, key, value, mask, 0.0, False)
    assert weights is None and context.dtype == torch.bfloat16 and context.shape == query.shape
    assert bool(calls) is not bf16_units  # three products with bf16 units, the fused kernel without
    error = (context.float() - _reference(query, key, value, mask)).abs().max().item()
    assert 0 < error < 0.03  # bfloat16 rounding of the probabilities and the output (measured <= 0.008)


def test_short_or_float32_attention_keeps_the_fused_kernel(monkeypatch) -> None:
    monkeypatch.setattr(layers, "cpu_has_low_precision_units", lambda: True)
    assert not layers._long_native_low_precision(_inputs(layers.LONG_ATTENTION_ROWS - 1, False)[0])
    assert not layers._long_native_low_precision(_inputs(layers.LONG_ATTENTION_ROWS, False)[0].float())
    assert layers._long_native_low_precision(_inputs(layers.LONG_ATTENTION_ROWS, False)[0])
