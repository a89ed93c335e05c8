"""The building blocks every PyTorch sub-network uses: `Linear` (faster CPU inference paths, same
parameters and math as `nn.Linear`), attention over additive masks, activations by config name and the
additive mask itself. Imports nothing of the model base class (`modeling_utils.py` imports this).
Twin of `blip_tf/layers.py`.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from blip_core.config.model_constants import MASK_FILL_VALUE, activation_name
from blip_core.modeling import cpu_features


def gelu_erf(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.gelu(x)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.gelu(x, approximate="tanh")


# Named functions, not lambdas: a model holds its activation, and a whole model must pickle (`torch.save(model)`,
# `copy.deepcopy`, handing a model to a spawned process).
_ACTIVATIONS = {
    "gelu_erf": gelu_erf,
    "gelu_tanh": gelu_tanh,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "silu": nn.functional.silu,
}


# Decoding multiplies a few rows by each weight: memory-bound products that MKL's GEMM runs
# poorly on CPUs. On AVX-512 CPUs oneDNN's matmul takes every float32 product (`_onednn_preferred`).
# Elsewhere, one row: the weight is split in two halves, one streamed by each core; a few rows
# (beams, batches): oneDNN's matmul, up to 1.7x faster than MKL's there (the LM head); more: MKL.
ONEDNN_MAX_ROWS = 256
# CPUs without AMX or AVX512-BF16 emulate bf16/fp16 matrix products slowly; there, only the
# memory-bound few-row products stay in the low precision, larger ones compute in float32 (the
# same math: low-precision values are exact in float32, and the products accumulate in float32).
NATIVE_LOW_PRECISION_ROWS = 4
LOW_PRECISION = (torch.bfloat16, torch.float16)


@functools.lru_cache(maxsize=1)
def cpu_has_low_precision_units() -> bool:
    """AMX tiles or AVX512-BF16: bf16 matrix products run natively."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def _emulated(tensor: torch.Tensor) -> bool:
    return tensor.dtype in LOW_PRECISION and tensor.device.type == "cpu" and not cpu_has_low_precision_units()


def traced() -> bool:
    """Inside `torch.export`, `torch.compile` or `torch.jit.trace`: the CPU fast paths (oneDNN calls, the split
    GEMV, chosen by data-independent checks a tracer would bake in) step aside for the plain operations."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


class Linear(nn.Linear):
    """`nn.Linear` with faster CPU inference paths; same parameters, names and math.

    Without autograd, float32: on AVX-512 CPUs every product goes through oneDNN's matmul; elsewhere
    one row (decoding) streams each half of the weight on its own core and up to `ONEDNN_MAX_ROWS`
    rows (beams) go through oneDNN. Low precision on CPUs without bf16 units: large products compute
    in float32.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if traced():  # torch.export, torch.compile, ONNX export: the plain operation every tracer knows
            return nn.functional.linear(input, self.weight, self.bias)
        if not input.numel():  # an empty batch never reaches a kernel (oneDNN's may mishandle 0 rows)
            return input.new_zeros(*input.shape[:-1], self.out_features)
        weight = self.weight
        if weight.dtype == torch.float32:
            if (
                input.is_cpu
                and input.dim() > 1
                and (input.numel() <= ONEDNN_MAX_ROWS * self.in_features or _onednn_preferred())
                and not torch.is_grad_enabled()
                and input.dtype == torch.float32
                and weight.is_contiguous()
            ):
                if input.numel() == self.in_features and not self.out_features % 2 and not _onednn_preferred():
                    return self._split_gemv(input)
                out = _onednn_linear(input, weight, self.bias) if input.is_contiguous() else None
                if out is not None:
                    return out
            return nn.functional.linear(input, weight, self.bias)
        if _emulated(weight):
            if input.numel() <= NATIVE_LOW_PRECISION_ROWS * self.in_features:
                return nn.functional.linear(input, weight, self.bias)
            bias = None if self.bias is None else self.bias.float()
            wide, weight = input.float().contiguous(), weight.float()
            out = _onednn_linear(wide, weight, bias) if _onednn_preferred() and not torch.is_grad_enabled() else None
            return (nn.functional.linear(wide, weight, bias) if out is None else out).to(self.weight.dtype)
        return nn.functional.linear(input, weight, self.bias)

    def _split_gemv(self, input: torch.Tensor) -> torch.Tensor:
        """One row: each half of the weight streamed by its own core, (2, 1, I) @ (2, I, O/2)."""
        halves = self.weight.view(2, self.out_features // 2, self.in_features).transpose(1, 2)  # (2, I, O/2)
        out = torch.bmm(input.reshape(1, 1, self.in_features).expand(2, 1, -1), halves)  # (2, 1, O/2)
        out = out.view(*input.shape[:-1], self.out_features)
        return out if self.bias is None else out + self.bias


@functools.lru_cache(maxsize=1)
def _onednn_preferred() -> bool:
    """With AVX-512, oneDNN's float32 matmul is the faster for every product: one row streams its weight at the
    full bandwidth of both cores (38 GB/s on the AMD EPYC of the benchmarks, the split halves 31), and large
    products run at 350-480 GFLOP/s there against MKL's 195-235 (MKL does not use the full width of AMD's AVX-512
    units). On the AVX2-only machines measured, the split halves and MKL were the faster."""
    flags = cpu_features.cpu_flags()
    return bool(flags and "avx512f" in flags)


_ONEDNN = {"usable": hasattr(torch.ops.mkldnn, "_linear_pointwise") and torch.backends.mkldnn.is_available()}


def _onednn_linear(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor | None:
    """oneDNN's fp32 matmul (the op PyTorch's own compiler emits for CPU linears); None where unavailable."""
    if not _ONEDNN["usable"]:
        return None
    try:
        return torch.ops.mkldnn._linear_pointwise(input, weight, bias, "none", [], "")
    except (RuntimeError, NotImplementedError):  # a build without this kernel: never try again
        _ONEDNN["usable"] = False
        return None


def attend(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None,
    dropout: float,
    output_attentions: bool,
    scale: float | None = None,
    group: int = 1,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention (B, H, T, D) -> (context, probabilities if asked); `mask` is additive.

    With `group` > 1, every `group` consecutive query rows share one row of keys/values (the beams
    of one image): those rows are folded into the query axis, so the keys/values are never copied.
    """
    if group > 1:
        batch, heads, length, size = query.shape
        folded = query.view(batch // group, group, heads, length, size).transpose(1, 2)
        folded = folded.reshape(batch // group, heads, group * length, size)  # (B, H, G*T, D)
        context, weights = attend(folded, key, value, mask, dropout, output_attentions, scale)
        context = context.view(batch // group, heads, group, length, size).transpose(1, 2)
        return context.reshape(batch, heads, length, size), weights  # (B*G, H, T, D)
    dtype = query.dtype
    if _emulated(query):
        query, key, value = query.float(), key.float(), value.float()
        mask = None if mask is None else mask.float()
    if output_attentions or (dropout == 0 and _long_native_low_precision(query)):
        scores = query @ key.transpose(-1, -2) * (query.shape[-1] ** -0.5 if scale is None else scale)
        weights = torch.softmax(scores if mask is None else scores + mask, dim=-1)
        context = nn.functional.dropout(weights, dropout, training=dropout > 0) @ value
        return context.to(dtype), (weights.to(dtype) if output_attentions else None)
    context = nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, dropout_p=dropout, scale=scale
    )
    return context.to(dtype), None


# From this many query rows, bfloat16/float16 attention on a CPU with low-precision units runs faster as its three
# products (oneDNN's bfloat16 GEMMs) than through PyTorch's fused CPU kernel (ViT-B at 384, 577 tokens: 5.5 ms
# against 6.5 per layer); the same numbers as the `output_attentions` path.
LONG_ATTENTION_ROWS = 256


def _long_native_low_precision(query: torch.Tensor) -> bool:
    return (
        query.dtype in LOW_PRECISION
        and query.is_cpu
        and query.shape[-2] >= LONG_ATTENTION_ROWS
        and cpu_has_low_precision_units()
    )


def get_activation(hidden_act: str):
    """The activation function a config names."""
    return _ACTIVATIONS[activation_name(hidden_act)]


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A 0/1 keep-mask as the additive mask BLIP uses: 0 where kept, -10000 where masked."""
    return (1.0 - mask.to(dtype)) * MASK_FILL_VALUE
