"""Int8 weight-only decoding: the text decoder's linear layers hold int8 weights and a float32 scale per output
channel (`blip_core.modeling.quantization` says which layers and how). Twin of `blip_tf/quantization.py`.

The product runs in PyTorch's own weight-only int8 kernel (`aten._weight_int8pack_mm`: the int8 weights are
widened in registers, bfloat16 activations, float32 accumulation), so each decoding step reads a quarter of the
float32 weights. `torchao`'s int8 weight-only tensors were measured 10x slower than bfloat16 in eager mode on
CPU (they dequantize the whole weight per call), so they are not used.
"""

from __future__ import annotations

import torch
from torch import nn

from blip_core.modeling.quantization import check_quantization, is_quantized_module, quantize_int8
from blip_torch.layers import Linear, cpu_has_low_precision_units

# The weight-only kernel streams the weight once per row block; it is the fastest for the few rows of decoding, but
# up to 1.5x slower than a bfloat16 GEMM on the widened weight for the hundreds of image tokens whose keys/values
# the cross-attention projects once per image.
INT8_KERNEL_MAX_ROWS = 32
# PyTorch 2.13's CPU kernel reads the input features in blocks of 16: other widths return NaN or crash the process
# (in_features 20 or 37 segfault, 8, 24, 40 give NaN, measured on AVX-512); those layers widen the weight instead.
INT8_KERNEL_FEATURE_MULTIPLE = 16
_KERNEL_MISSING: set[str] = set() if hasattr(torch.ops.aten, "_weight_int8pack_mm") else {"cpu", "cuda", "mps"}


class Int8Linear(nn.Module):
    """A `Linear` with int8 weights (out, in), a float32 scale (out,) and its bias; inference only.

    Input (..., in) of any float dtype; output (..., out) in the input's dtype. The activations and scales are
    rounded to bfloat16 for the kernel, which accumulates in float32 and returns bfloat16.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        q, scale = quantize_int8(linear.weight.detach().to("cpu", torch.float32).numpy())
        device = linear.weight.device
        self.register_buffer("weight_int8", torch.from_numpy(q).to(device))
        self.register_buffer("weight_scale", torch.from_numpy(scale).to(device))
        self.register_buffer("_scale_bf16", self.weight_scale.to(torch.bfloat16), persistent=False)
        bias = linear.bias
        self.bias = None if bias is None else nn.Parameter(bias.detach().float(), requires_grad=False)  # (out,)
        if bias is not None:  # what a bfloat16 input adds, made once (decoding calls each layer per token)
            self.register_buffer("_bias_bf16", self.bias.detach().to(torch.bfloat16), persistent=False)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and input.requires_grad:
            raise RuntimeError(
                "Int8Linear is for inference: gradients do not flow through int8 weights; train the model in "
                "float32 or bfloat16 and quantize it afterwards"
            )
        if not input.numel():
            return input.new_zeros(*input.shape[:-1], self.out_features)
        out = self._product(input.reshape(-1, self.in_features).to(torch.bfloat16))
        if self.bias is not None:
            out = out + self._bias_bf16 if input.dtype == torch.bfloat16 else out.float() + self.bias
        return out.view(*input.shape[:-1], self.out_features).to(input.dtype)

    def _product(self, flat: torch.Tensor) -> torch.Tensor:
        """flat (R, in) bfloat16 @ (weight_int8 * scale).T: (R, out) bfloat16, float32 accumulation."""
        if flat.shape[0] > INT8_KERNEL_MAX_ROWS:  # compute-bound: widen the weight once, one GEMM
            if flat.is_cpu and not cpu_has_low_precision_units():  # bfloat16 GEMMs are emulated: float32
                widened = self.weight_int8.float() * self._scale_bf16.float()[:, None]
                return (flat.float() @ widened.T).to(torch.bfloat16)
            return flat @ (self.weight_int8.to(torch.bfloat16) * self._scale_bf16[:, None]).T
        if flat.device.type not in _KERNEL_MISSING and not self.in_features % INT8_KERNEL_FEATURE_MULTIPLE:
            try:
                return torch.ops.aten._weight_int8pack_mm(flat.contiguous(), self.weight_int8, self._scale_bf16)
            except (RuntimeError, NotImplementedError):  # a device or build without the kernel: widen instead
                _KERNEL_MISSING.add(flat.device.type)
        # as the kernel: bfloat16 scales on a float32 product (exact: bfloat16 x int8 products are exact in float32)
        return ((flat.float() @ self.weight_int8.float().T) * self._scale_bf16.float()).to(torch.bfloat16)

    def _apply(self, fn, recurse: bool = True):
        """`model.to(dtype)`/`.half()` move the buffers but keep their dtypes: int8 weights, float32 scales and bias,
        the kernel's bfloat16 scales and bias (the layer computes in bfloat16 whatever the model's dtype)."""
        super()._apply(fn, recurse)
        self.weight_scale = self.weight_scale.float()
        if self.bias is not None:
            self.bias.data = self.bias.data.float()
        self._scale_bf16 = self._scale_bf16.to(torch.bfloat16)
        if self.bias is not None:
            self._bias_bf16 = self._bias_bf16.to(torch.bfloat16)
        return self

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights"


def quantize_model(model: nn.Module, quantization: str | None) -> nn.Module:
    """Replace the text decoder's `Linear` layers with `Int8Linear` in place; returns `model`.

    Raises:
        ValueError: an unknown mode, or a model without a text decoder (`check_quantization`).
    """
    name = type(model).__name__
    mode = check_quantization(name, quantization, [child for child, _ in model.named_children()])
    if mode is None:
        return model
    for path, module in list(model.named_modules()):
        if isinstance(module, Linear) and is_quantized_module(path):
            parent_path, _, attribute = path.rpartition(".")
            setattr(model.get_submodule(parent_path), attribute, Int8Linear(module))
    model.quantization = mode
    return model
