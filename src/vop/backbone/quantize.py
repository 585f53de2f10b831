"""int8 inference for the frozen backbone (``--precision int8``), built at load, never saved.

Every linear layer of both transformers (the attention's q/k/v projection ``in_proj``, its
``out_proj``, and the MLP's ``c_fc`` / ``c_proj``) is replaced by :class:`Int8Linear`: int8
weights with one scale per output channel, activations quantized when the layer runs.
Everything else stays fp32: patch and token embeddings, LayerNorms, the two final projections,
``logit_scale``, attention itself (softmax(QK^T)V) and every tensor a method trained (prompts,
adapter modules, and any backbone weight the method trains, e.g. ``partial``'s last blocks). So
every method's prompted forward (``vop.backbone.prompted``) runs unchanged on top.

Kernel: fbgemm's dynamic int8 GEMM (``torch.ops.quantized.linear_dynamic``, the kernel behind
``torch.ao.quantization.quantize_dynamic``), called directly so that the bare ``in_proj_weight``
parameter is quantized too. ``docs/cpu-runtimes.md`` ("int8 inference") records why this and
not torchao or ``torch._int_mm`` (measured by ``benchmarks/int8_options.py``).

Activation scales are per token, not per tensor: each row of the input is divided by its own
absolute maximum before the kernel (whose one range per call is then about [-1, 1] whatever
the rows' magnitudes) and the output row is multiplied back. One token with large activations
(real CLIP weights have such outliers) then costs precision only in its own row (tested). The
range still follows the call's smallest normalised value (after a GELU it is above -1), so a
video's vector can differ slightly (about 1e-3 here) between a batch and alone. Weight scales are per output channel, so
one large weight row costs precision only in its own output. ``keep`` leaves named layers in
fp32 for weights where a layer still loses too much (``benchmarks/int8_quality.py`` names the
layer with the largest error).

The quantized model is for inference only: the fp32 weights it was built from are dropped to
free memory, and ``weights_sha256`` keeps naming those fp32 weights (computed before).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable

import torch
from torch import nn

from vop.backbone.clip import CLIP

PRECISIONS = ("fp32", "int8")  # of this torch path; the CPU defaults live in vop.runtime
_EPS = 1e-12


class PrecisionError(ValueError):
    """A precision that cannot run here (unknown name, int8 on a GPU, no int8 engine)."""


def check_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """``precision`` if it can run on ``device``; a one-line :class:`PrecisionError` otherwise."""
    if precision not in PRECISIONS:
        raise PrecisionError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "int8":
        if torch.device(device).type != "cpu":
            raise PrecisionError(f"--precision int8 runs on the CPU only, not on {device}")
        if not any(e in torch.backends.quantized.supported_engines for e in ("x86", "fbgemm", "qnnpack")):
            raise PrecisionError("--precision int8 needs torch's fbgemm or qnnpack engine, which this build lacks")
    return precision


def _reduce_range() -> bool:
    # fbgemm's AVX2 kernel multiplies u8 x s8 pairs into int16 and would saturate with full 8-bit
    # activations; its own default (and torch.ao's) is 7-bit activations on x86, full 8 on qnnpack.
    return torch.backends.quantized.engine != "qnnpack"


class Int8Linear(nn.Module):
    """``y = x W^T + b`` with ``W`` int8 (symmetric, one scale per output row) and ``x`` quantized per
    token at run time; ``b`` stays fp32. Holds no parameters: nothing of it is saved or trained."""

    per_token = True  # False: one activation range per call (benchmarks/int8_options.py compares)

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, name: str = ""):
        super().__init__()
        w = weight.detach().to("cpu", torch.float32)
        self.name = name
        self.out_features, self.in_features = w.shape
        self.weight_scale = (w.abs().amax(dim=1) / 127).clamp_min(_EPS)  # [out]
        with warnings.catch_warnings():  # quantized tensors are deprecated as a user API; the kernel is not
            warnings.simplefilter("ignore")
            qw = torch.quantize_per_channel(w, self.weight_scale.double(),
                                            torch.zeros(self.out_features, dtype=torch.long), 0, torch.qint8)
            self._packed = torch.ops.quantized.linear_prepack(qw, None)
        self.bias = None if bias is None else bias.detach().to("cpu", torch.float32).clone()
        self.reduce_range = _reduce_range()

    def int8_weight(self) -> torch.Tensor:
        """The stored int8 weight ``[out, in]`` (for tests and the quality report)."""
        qw, _ = torch.ops.quantized.linear_unpack(self._packed)
        return qw.int_repr()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, self.in_features).float()  # [M, in]
        if not self.per_token:
            y = torch.ops.quantized.linear_dynamic(x, self._packed, self.reduce_range)  # [M, out]
            y = y if self.bias is None else y.add_(self.bias)
            return y.view(*shape[:-1], self.out_features)
        scale = torch.linalg.vector_norm(x, float("inf"), dim=1, keepdim=True).clamp_min_(_EPS)  # [M, 1]
        y = torch.ops.quantized.linear_dynamic(x / scale, self._packed, self.reduce_range)  # [M, out]
        y = y.mul_(scale) if self.bias is None else torch.addcmul(self.bias, y, scale, out=y)
        return y.view(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel weights"


def precision_of(clip: CLIP) -> str:
    return getattr(clip, "precision", "fp32")


def _linears(clip: CLIP):
    """``(name, owner, attribute, weight, bias)`` for every linear layer of both transformers."""
    for tower, prefix in ((clip.visual.transformer, "visual.transformer"), (clip.transformer, "transformer")):
        for i, blk in enumerate(tower.resblocks):
            p = f"{prefix}.resblocks.{i}"
            attn = blk.attn
            if attn.in_proj is None:
                yield f"{p}.attn.in_proj", attn, "in_proj", attn.in_proj_weight, attn.in_proj_bias
            for owner, attr, name in ((attn, "out_proj", "attn.out_proj"), (blk.mlp, "c_fc", "mlp.c_fc"),
                                      (blk.mlp, "c_proj", "mlp.c_proj")):
                m = getattr(owner, attr)
                if isinstance(m, nn.Linear):
                    yield f"{p}.{name}", owner, attr, m.weight, m.bias


def quantize_clip(clip: CLIP, keep: Iterable[str] = ()) -> dict:
    """Replace the linear layers of ``clip`` by :class:`Int8Linear`, in place; returns a summary.

    A layer stays fp32 when its weight is trained (``requires_grad``: a method's own backbone
    tensors, see ``vop.tuning``) or its name matches one of the regular expressions in ``keep``
    (names as in the state dict without ``_weight``, e.g. ``visual.transformer.resblocks.11.mlp.c_proj``).
    Idempotent: a second call changes nothing. Run it after the adapter is loaded.
    """
    check_precision("int8")
    patterns = [re.compile(k) for k in keep]
    clip.weights_sha256  # noqa: B018 - hash the fp32 weights now: the hash names them, not the int8 copy
    quantized, kept = [], []
    for name, owner, attr, weight, bias in list(_linears(clip)):
        if weight.requires_grad or any(p.search(name) for p in patterns):
            kept.append(name)
            continue
        layer = Int8Linear(weight, bias, name)
        if attr == "in_proj":
            owner.in_proj = layer
            if not bias.requires_grad:  # a trained bias stays referenced by the method (and copied above)
                del owner.in_proj_bias
            del owner.in_proj_weight
        else:
            setattr(owner, attr, layer)
        quantized.append(name)
    already = sum(1 for m in clip.modules() if isinstance(m, Int8Linear))
    if already:
        clip.precision = "int8"
    return {"precision": precision_of(clip), "quantized": quantized, "kept_fp32": kept, "int8_layers": already}


def quantize_model(model, keep: Iterable[str] = ()) -> dict:
    """:func:`quantize_clip` on the backbone of a ``vop.model`` model (after its adapter is loaded)."""
    return quantize_clip(model.clip, keep)


def apply_precision(model, precision: str, keep: Iterable[str] = ()) -> dict | None:
    """Make ``model`` run at ``precision`` ("fp32": nothing to do; "int8": :func:`quantize_model`)."""
    check_precision(precision)
    if precision == "int8":
        return quantize_model(model, keep)
    if precision_of(model.clip) != "fp32":
        raise PrecisionError("this backbone is already int8; load it again for fp32")
    return None


def int8_layers(module: nn.Module) -> list[Int8Linear]:
    return [m for m in module.modules() if isinstance(m, Int8Linear)]

