"""`Linear`'s inference paths (split GEMV, oneDNN) give `nn.functional.linear`'s numbers, with and without bias."""

from __future__ import annotations

import pytest
import torch

from blip_torch.layers import Linear


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 1, 48), (3, 1, 48), (2, 12, 48), (300, 48)])
def test_inference_paths_equal_plain_linear(shape, bias):
    torch.manual_seed(0)
    layer = Linear(48, 70, bias=bias)
    inputs = torch.randn(*shape)
    with torch.no_grad():
        expected = torch.nn.functional.linear(inputs, layer.weight, layer.bias)
        got = layer(inputs)
        strided = layer(inputs.transpose(0, -2).contiguous().transpose(0, -2))  # same values, other strides
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(strided, expected, atol=1e-5, rtol=1e-5)


def test_gradients_take_the_autograd_path():
    layer = Linear(8, 6)
    out = layer(torch.randn(1, 8, requires_grad=True))
    out.sum().backward()
    assert layer.weight.grad is not None and out.grad_fn is not None
