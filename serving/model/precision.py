"""Serving precisions of a trained SessionTransformer: the same weights in fp32, bf16 or fp16, or
with int8 dynamic quantisation of every ``nn.Linear``.

    fp32  the trained weights as they are
    bf16  every floating-point parameter and buffer cast to bfloat16
    fp16  the same in float16
    int8  torch.ao.quantization.quantize_dynamic on nn.Linear: int8 weights (per tensor), activations
          quantised per call from their observed range; everything else stays fp32

What int8 covers in this model: the attention's ``qkv`` and ``proj`` projections and the two
feed-forward layers of every block (the only Linear modules on the attention path:
CausalSelfAttention.forward and serving/model/attribution.py both call them as modules), and the copy
head's ``copy_q``, ``copy_k`` and ``copy_gate``. Not covered: the embeddings, the LayerNorms, the
attention's own products (q.k and the weighted sum of v inside scaled_dot_product_attention) and the
output layer, which is the item-embedding table used as a matrix (SessionTransformer.logits), in
fp32 under every precision. Dynamic quantisation runs on the CPU only. torch 2.15 marks
torch.ao.quantization deprecated in favour of torchao; it still works, and ``with_precision`` keeps
its warnings out of Triton's log.

Scores (``logits``, the copy head's softmax) are computed in fp32 under every precision; only the
hidden states carry the lower precision. The Triton backend picks the precision from its model
config (``PRECISION``); serving/offline/compress.py measures each one.
"""
from __future__ import annotations

import copy
import io
import warnings

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
# Served when the model config names no precision; model_repo/session_transformer/config.pbtxt
# names it explicitly. Chosen by serving/offline/compress.py's rule (README, "Compression").
DEFAULT_PRECISION = "fp32"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def serving_device(precision: str, gpu: bool, device_id: int = 0) -> str:
    """Where a model of this precision runs: GPU ``device_id`` when the instance is a GPU one, except
    int8 (CPU kernels only), else the CPU."""
    check_precision(precision)
    return f"cuda:{device_id}" if gpu and precision != "int8" else "cpu"


def with_precision(model: nn.Module, precision: str) -> nn.Module:
    """An eval-mode copy of ``model`` (on the CPU for int8) in ``precision``; fp32 returns ``model``
    itself in eval mode. The input model is never changed."""
    check_precision(precision)
    model.eval()
    if precision == "fp32":
        return model
    if precision == "int8":
        cpu = copy.deepcopy(model).to("cpu")
        with warnings.catch_warnings():
            # torch 2.15 marks torch.ao.quantization and quantised tensors deprecated (torchao is the
            # successor); they still work, and a warning per Triton instance load tells nobody anything.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            return torch.ao.quantization.quantize_dynamic(cpu, {nn.Linear}, dtype=torch.qint8).eval()
    return copy.deepcopy(model).to(DTYPES[precision]).eval()


def quantized_modules(model: nn.Module) -> list[str]:
    """Names of the modules that run with int8 dynamic quantisation."""
    quantized = torch.ao.nn.quantized.dynamic.Linear
    return [name for name, module in model.named_modules() if isinstance(module, quantized)]


def float_linears(model: nn.Module) -> list[str]:
    """Names of the ``nn.Linear`` modules still in floating point."""
    return [name for name, module in model.named_modules() if type(module) is nn.Linear]


def state_bytes(model: nn.Module) -> int:
    """Size of the model's serialized state_dict (weights as stored for this precision)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()
