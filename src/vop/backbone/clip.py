"""CLIP in our own code: architecture as data, numerically identical to OpenAI CLIP.

This is the one module that knows CLIP's insides. Parameter names follow the OpenAI
release layout (``visual.conv1.weight``, ``transformer.resblocks.0.attn.in_proj_weight`` ...),
so an OpenAI or open_clip state dict loads without renaming. Tensors are batch-first
(``[N, L, D]``) everywhere; attention runs through ``F.scaled_dot_product_attention``.

The seams used by the prompted passes (``vop.backbone.prompted``):

* ``VisionTransformer.embed(images)``  -> tokens before ``ln_pre`` ``[N, 1 + P, D]``
* ``CLIP.embed_text(tokens)``          -> word + position embeddings ``[N, L, D]``
* ``Transformer.run_block(i, x, ...)`` -> one residual block (checkpointed if enabled)
* ``VisionTransformer.pool(x)`` / ``CLIP.pool_text(x, tokens)`` -> projected embeddings
"""

from __future__ import annotations

import hashlib
from dataclasses import MISSING, asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

# --------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class VisionCfg:
    width: int
    layers: int
    heads: int
    patch_size: int
    image_size: int = 224

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid**2


@dataclass(frozen=True)
class TextCfg:
    width: int
    layers: int
    heads: int
    context_length: int = 77
    vocab_size: int = 49408


@dataclass(frozen=True)
class CLIPConfig:
    name: str
    embed_dim: int
    vision: VisionCfg
    text: TextCfg
    quick_gelu: bool = True  # OpenAI's releases use QuickGELU; open_clip's LAION models use GELU

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CLIPConfig:
        """The config a file recorded (``to_dict``'s output), validated (:meth:`validate`): a
        wrong key, type or size is a ``ValueError`` naming the field, raised before anything is built."""
        if not isinstance(d, dict):
            raise ValueError(f"a CLIP config must be an object, found {type(d).__name__}")  # noqa: TRY004 - callers report ValueError
        _check_keys(d, {"name", "embed_dim", "vision", "text"}, {"quick_gelu"}, "config")
        parts = {}
        for key, sub in (("vision", VisionCfg), ("text", TextCfg)):
            if not isinstance(d[key], dict):
                raise ValueError(f"{key} must be an object, found {type(d[key]).__name__}")  # noqa: TRY004
            names = {f.name for f in fields(sub)}
            required = {f.name for f in fields(sub) if f.default is MISSING}
            _check_keys(d[key], required, names - required, key)
            parts[key] = sub(**d[key])
        cfg = cls(name=d["name"], embed_dim=d["embed_dim"], vision=parts["vision"], text=parts["text"],
                  quick_gelu=d.get("quick_gelu", True))
        return cfg.validate()

    def validate(self) -> CLIPConfig:
        """Check every shape-determining number against the architecture's limits and the
        parameter ceiling (``vop.limits``) before anything is allocated; returns ``self``.

        A config read from a file (safetensors metadata, a Hugging Face ``config.json``, a recorded
        backbone) decides how much memory building the model takes, so a 400-byte file could
        otherwise ask for gigabytes. The parameter count is exact (:func:`parameter_count`).
        """
        from vop.limits import (
            MAX_BACKBONE_PARAMETERS,
            MAX_CONTEXT,
            MAX_DIM,
            MAX_IMAGE_SIZE,
            MAX_LAYERS,
            MAX_VOCAB,
        )

        if not isinstance(self.name, str) or not 0 < len(self.name) <= 200:
            raise ValueError("name must be a string of 1 to 200 characters")
        _check_int(self.embed_dim, 1, MAX_DIM, "embed_dim")
        if not isinstance(self.quick_gelu, bool):
            raise ValueError(f"quick_gelu is {str(self.quick_gelu)[:40]!r}; expected true or false")  # noqa: TRY004
        for label, tower in (("vision", self.vision), ("text", self.text)):
            _check_int(tower.width, 1, MAX_DIM, f"{label}.width")
            _check_int(tower.layers, 1, MAX_LAYERS, f"{label}.layers")
            _check_int(tower.heads, 1, tower.width, f"{label}.heads")
            if tower.width % tower.heads:
                raise ValueError(f"{label}.heads {tower.heads} does not divide {label}.width {tower.width}")
        v, t = self.vision, self.text
        _check_int(v.image_size, 1, MAX_IMAGE_SIZE, "vision.image_size")
        _check_int(v.patch_size, 1, v.image_size, "vision.patch_size")
        if v.image_size % v.patch_size:
            raise ValueError(f"vision.image_size {v.image_size} is not a multiple of vision.patch_size {v.patch_size}")
        _check_int(t.context_length, 2, MAX_CONTEXT, "text.context_length")
        # every id the CLIP tokenizer emits must have a row
        _check_int(t.vocab_size, TOKENIZER_VOCAB, MAX_VOCAB, "text.vocab_size")
        n = parameter_count(self)
        if n > MAX_BACKBONE_PARAMETERS:
            raise ValueError(f"the architecture has {n:,} parameters ({4 * n / 2**30:.1f} GiB in float32), over "
                             f"vop's ceiling of {MAX_BACKBONE_PARAMETERS:,}")
        return self


CONFIGS: dict[str, CLIPConfig] = {
    "ViT-B-32": CLIPConfig("ViT-B-32", 512, VisionCfg(768, 12, 12, 32), TextCfg(512, 12, 8)),
    "ViT-B-16": CLIPConfig("ViT-B-16", 512, VisionCfg(768, 12, 12, 16), TextCfg(512, 12, 8)),
    "ViT-L-14": CLIPConfig("ViT-L-14", 768, VisionCfg(1024, 24, 16, 14), TextCfg(768, 12, 12)),
    # Tiny configs: tests (random weights) and the bundled synthetic-world model.
    "tiny": CLIPConfig("tiny", 32, VisionCfg(64, 2, 4, 8, 32), TextCfg(32, 2, 2)),
    "tiny-12": CLIPConfig("tiny-12", 32, VisionCfg(64, 12, 4, 8, 32), TextCfg(32, 12, 2)),
    "tiny-synthetic": CLIPConfig("tiny-synthetic", 64, VisionCfg(64, 6, 4, 8, 32), TextCfg(64, 4, 4)),
}


TOKENIZER_VOCAB = 49408  # ids of vop's CLIP BPE tokenizer (vop.backbone.tokenizer)


def _check_int(value, lo: int, hi: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{what} is {str(value)[:40]!r}; expected an integer from {lo} to {hi}")
    return value


def _check_keys(d: dict, required: set, optional: set, what: str) -> None:
    missing, unknown = sorted(required - set(d)), sorted(set(d) - required - optional)
    if missing or unknown:
        raise ValueError(f"{what} " + "; ".join(
            ([f"lacks {missing}"] if missing else []) + ([f"has unknown keys {[str(k)[:40] for k in unknown[:5]]}"]
                                                        if unknown else [])))


def parameter_count(cfg: CLIPConfig) -> int:
    """How many numbers a CLIP of ``cfg`` holds, computed from the config alone (nothing is built)."""
    v, t, e = cfg.vision, cfg.text, cfg.embed_dim

    def blocks(w: int, layers: int) -> int:
        # in_proj 3w^2+3w, out_proj w^2+w, c_fc 4w^2+4w, c_proj 4w^2+w, two LayerNorms 4w
        return layers * (12 * w * w + 13 * w)

    grid = v.image_size // v.patch_size
    vision = 3 * v.patch_size**2 * v.width + (grid**2 + 2) * v.width + 4 * v.width + blocks(v.width, v.layers) \
        + v.width * e  # conv1, class + positions, ln_pre + ln_post, blocks, proj
    text = (t.vocab_size + t.context_length + 2) * t.width + blocks(t.width, t.layers) + t.width * e
    return vision + text + 1  # + logit_scale


def state_shapes(cfg: CLIPConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of a CLIP of ``cfg``, without allocating any (built on the
    meta device), so a file's tensors are compared with the config before the model is built."""
    with torch.device("meta"):
        model = CLIP(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def get_config(name: str) -> CLIPConfig:
    """Named architecture; a clear error lists the known names."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise KeyError(f"unknown CLIP config {name!r}; known: {', '.join(sorted(CONFIGS))}") from None


def list_configs() -> list[str]:
    return sorted(CONFIGS)


# --------------------------------------------------------------------------- layers


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``, OpenAI's activation.

    Without autograd it runs in place on one fresh buffer: the MLP's ``[N, L, 4D]`` activations
    are the largest tensors of the forward pass, and two fewer of them per block is measurably
    faster on CPU (fewer page-faulting allocations). The numbers are bit-identical either way.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return x * torch.sigmoid(1.702 * x)
        return (1.702 * x).sigmoid_().mul_(x)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 (as OpenAI CLIP does), cast back to the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        orig = x.dtype
        return F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(),
                            self.eps).to(orig)


class Attention(nn.Module):
    """Multi-head self-attention with the parameter layout of ``nn.MultiheadAttention``."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        # int8 replacement of in_proj_weight/bias ([.., D] -> [.., 3D]), set by vop.backbone.quantize
        self.in_proj: nn.Module | None = None

    def forward(self, x: torch.Tensor, is_causal: bool = False,
                context: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``[N, L, D]`` -> ``[N, L, D]``.

        ``context`` ``[N or 1, m, D]`` (already normalised) are extra tokens that ``x`` attends to
        but whose own outputs are not wanted: they give keys and values only, placed *before*
        ``x`` (under ``is_causal`` every token of ``x`` sees all of them). The result equals
        running ``cat([context, x])`` and dropping the first ``m`` outputs, without computing
        those outputs' queries, attention rows or (in the block) MLP.
        """
        n, length, d = x.shape
        hd = d // self.heads
        qkv = self._project(x)  # [N, L, 3D]
        qkv = qkv.view(n, length, 3, self.heads, hd).permute(2, 0, 3, 1, 4)  # [3, N, H, L, hd]
        if context is None:
            out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=is_causal)  # [N, H, L, hd]
        else:
            m = context.shape[1]
            kv = self._project(context, kv_only=True)  # [N|1, m, 2D]
            kv = kv.view(-1, m, 2, self.heads, hd).permute(2, 0, 3, 1, 4).expand(-1, n, -1, -1, -1)
            k = torch.cat([kv[0], qkv[1]], dim=2)  # [N, H, m + L, hd]
            v = torch.cat([kv[1], qkv[2]], dim=2)
            mask = None
            if is_causal:  # query i sees the m context tokens and keys 0..i of x
                mask = torch.ones(length, m + length, dtype=torch.bool, device=x.device).tril(m)
            out = F.scaled_dot_product_attention(qkv[0], k, v, attn_mask=mask)  # [N, H, L, hd]
        out = out.transpose(1, 2).reshape(n, length, d)  # [N, L, D]
        return self.out_proj(out)

    def _project(self, x: torch.Tensor, kv_only: bool = False) -> torch.Tensor:
        """q/k/v projection ``[.., D] -> [.., 3D]`` (``kv_only``: keys and values, ``[.., 2D]``)."""
        if self.in_proj is not None:  # int8: one kernel for all rows; the context's few queries are dropped
            qkv = self.in_proj(x)
            return qkv[..., x.shape[-1]:] if kv_only else qkv
        if kv_only:
            d = x.shape[-1]
            return F.linear(x, self.in_proj_weight[d:], self.in_proj_bias[d:])
        return F.linear(x, self.in_proj_weight, self.in_proj_bias)


class MLP(nn.Sequential):
    def __init__(self, width: int, quick_gelu: bool):
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.gelu = QuickGELU() if quick_gelu else nn.GELU()
        self.c_proj = nn.Linear(4 * width, width)


class ResidualAttentionBlock(nn.Module):
    """Pre-LN transformer block.

    ``attn_adapter`` / ``mlp_adapter`` are empty hooks: the adapter baselines
    (``vop.tuning``) set them to small modules that run in parallel to the attention / MLP
    branch on the same normalised input; with ``None`` the block is plain CLIP.
    """

    def __init__(self, width: int, heads: int, quick_gelu: bool):
        super().__init__()
        self.ln_1 = LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln_2 = LayerNorm(width)
        self.mlp = MLP(width, quick_gelu)
        self.attn_adapter: nn.Module | None = None
        self.mlp_adapter: nn.Module | None = None

    def forward(self, x: torch.Tensor, is_causal: bool = False,
                context: torch.Tensor | None = None) -> torch.Tensor:
        """``context``: key/value-only tokens (prompts), see :meth:`Attention.forward`."""
        # The residual sums are accumulated into the branch outputs, which are fresh tensors
        # (outputs of linear layers, not needed by their backward): one allocation fewer per
        # branch, same numbers as ``x + branch``. The input ``x`` itself is never modified.
        h = self.ln_1(x)
        c = self.ln_1(context) if context is not None else None
        x = self.attn(h, is_causal=is_causal, context=c).add_(x)
        if self.attn_adapter is not None:
            x = x + self.attn_adapter(h)
        h = self.ln_2(x)
        x = self.mlp(h).add_(x)
        if self.mlp_adapter is not None:
            x = x + self.mlp_adapter(h)
        return x


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, quick_gelu: bool):
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads, quick_gelu) for _ in range(layers))
        self.grad_checkpointing = False

    def run_block(self, i: int, x: torch.Tensor, is_causal: bool = False,
                  context: torch.Tensor | None = None) -> torch.Tensor:
        """Run residual block ``i``; with gradient checkpointing its activations are recomputed.

        ``context``: prompt tokens that ``x`` attends to and whose outputs are discarded
        (keys/values only, see :meth:`Attention.forward`).
        """
        block = self.resblocks[i]
        if context is not None and context.shape[1] == 0:
            context = None  # zero prompt tokens: exactly the plain block
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, is_causal, context, use_reentrant=False)
        return block(x, is_causal=is_causal, context=context)

    def forward(self, x: torch.Tensor, is_causal: bool = False) -> torch.Tensor:
        for i in range(self.layers):
            x = self.run_block(i, x, is_causal)
        return x


class VisionTransformer(nn.Module):
    def __init__(self, cfg: VisionCfg, embed_dim: int, quick_gelu: bool):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.conv1 = nn.Conv2d(3, w, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.empty(w))
        self.positional_embedding = nn.Parameter(torch.empty(cfg.num_patches + 1, w))
        self.ln_pre = LayerNorm(w)
        self.transformer = Transformer(w, cfg.layers, cfg.heads, quick_gelu)
        self.ln_post = LayerNorm(w)
        self.proj = nn.Parameter(torch.empty(w, embed_dim))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Patch + [CLS] + position embeddings, before ``ln_pre``: ``[N, 3, H, W] -> [N, 1 + P, D]``."""
        x = self.conv1(images)  # [N, D, g, g]
        x = x.flatten(2).transpose(1, 2)  # [N, P, D]
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)  # [N, 1, D]
        x = torch.cat([cls, x], dim=1)  # [N, 1 + P, D]
        return x + self.positional_embedding.to(x.dtype)

    def pool(self, cls_token: torch.Tensor) -> torch.Tensor:
        """Final [CLS] output ``[N, D]`` -> projected embedding ``[N, E]``."""
        return self.ln_post(cls_token) @ self.proj

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.ln_pre(self.embed(images))
        x = self.transformer(x)
        return self.pool(x[:, 0])


# --------------------------------------------------------------------------- CLIP


class CLIP(nn.Module):
    """OpenAI CLIP: a vision ViT and a causal text transformer with linear projections.

    Frozen by default (``requires_grad=False`` everywhere, eval mode); methods unfreeze what
    they train. ``weights_sha256`` identifies the weights (see :func:`state_dict_sha256`).
    """

    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        self.cfg = cfg.validate()
        t = cfg.text
        self.visual = VisionTransformer(cfg.vision, cfg.embed_dim, cfg.quick_gelu)
        self.transformer = Transformer(t.width, t.layers, t.heads, cfg.quick_gelu)
        self.token_embedding = nn.Embedding(t.vocab_size, t.width)
        self.positional_embedding = nn.Parameter(torch.empty(t.context_length, t.width))
        self.ln_final = LayerNorm(t.width)
        self.text_projection = nn.Parameter(torch.empty(t.width, cfg.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(0.0))
        self.source: str = "random"  # where the weights came from: a path or a bundled name (load_clip)
        self.source_format: str = "random"  # how: vop.backbone.reference.FORMATS
        self._sha256: str | None = None
        self.init_weights()
        self.freeze()

    @property
    def name(self) -> str:
        return self.cfg.name

    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """Random init following OpenAI's scheme (used for tests, benchmarks and pretraining)."""
        if self.logit_scale.is_meta:  # shapes only (state_shapes): there are no values to set
            return
        g = generator

        def normal_(p, std):
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g) * std)

        v, t = self.cfg.vision, self.cfg.text
        normal_(self.token_embedding.weight, 0.02)
        normal_(self.positional_embedding, 0.01)
        normal_(self.visual.class_embedding, v.width**-0.5)
        normal_(self.visual.positional_embedding, v.width**-0.5)
        normal_(self.visual.conv1.weight, (3 * v.patch_size**2) ** -0.5)
        for tr in (self.visual.transformer, self.transformer):
            proj_std = tr.width**-0.5 * (2 * tr.layers) ** -0.5
            for blk in tr.resblocks:
                normal_(blk.attn.in_proj_weight, tr.width**-0.5)
                normal_(blk.attn.out_proj.weight, proj_std)
                normal_(blk.mlp.c_fc.weight, (2 * tr.width) ** -0.5)
                normal_(blk.mlp.c_proj.weight, proj_std)
                for b in (blk.attn.in_proj_bias, blk.attn.out_proj.bias, blk.mlp.c_fc.bias, blk.mlp.c_proj.bias):
                    nn.init.zeros_(b)
        normal_(self.text_projection, t.width**-0.5)
        normal_(self.visual.proj, v.width**-0.5)
        with torch.no_grad():
            self.logit_scale.fill_(torch.log(torch.tensor(1 / 0.07)).item())
        self._sha256 = None

    def freeze(self) -> CLIP:
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    @property
    def weights_sha256(self) -> str:
        """sha256 of the weights as loaded (computed once, then cached)."""
        if self._sha256 is None:
            self._sha256 = state_dict_sha256(self.state_dict())
        return self._sha256

    # ----- text seams
    def embed_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token + position embeddings: ``[N, L] -> [N, L, D]`` (L <= context length)."""
        x = self.token_embedding(tokens)  # [N, L, D]
        return x + self.positional_embedding[: tokens.shape[1]].to(x.dtype)

    def pool_text(self, x: torch.Tensor, eot_index: torch.Tensor) -> torch.Tensor:
        """Final hidden states ``[N, L, D]`` read out at ``eot_index`` ``[N]`` -> ``[N, E]``."""
        x = self.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot_index]  # [N, D]
        return x @ self.text_projection

    @staticmethod
    def eot_index(tokens: torch.Tensor) -> torch.Tensor:
        # The end-of-text token has the largest id in the vocabulary (49407).
        return tokens.argmax(dim=-1)

    # ----- public encoders
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` CLIP-normalised pixels -> ``[N, E]`` (not normalised)."""
        return self.visual(images)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[N, L]`` token ids -> ``[N, E]`` (not normalised).

        Under the causal mask the EOT output depends only on the tokens up to EOT, so the
        padding after the batch's last EOT is cut before the transformer runs: the result is
        the same (to float rounding) and a batch of short captions costs a fraction of 77 tokens.
        """
        eot = self.eot_index(tokens)
        if tokens.shape[0] > 0:
            tokens = tokens[:, : int(eot.max()) + 1]  # [N, L'] with L' = longest caption incl. EOT
        x = self.transformer(self.embed_text(tokens), is_causal=True)
        return self.pool_text(x, eot)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.visual.transformer.grad_checkpointing = enable
        self.transformer.grad_checkpointing = enable


def build_clip(config: str | CLIPConfig, seed: int | None = None) -> CLIP:
    """A CLIP with random weights (OpenAI init); ``seed`` makes them reproducible."""
    cfg = get_config(config) if isinstance(config, str) else config
    if seed is None:
        return CLIP(cfg)
    with torch.random.fork_rng(devices=[]):  # seed locally; the caller's RNG state is untouched
        torch.manual_seed(seed)
        return CLIP(cfg)


def state_dict_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over (name, shape, float32 bytes) of every tensor, in sorted name order.

    Independent of the file format, so the same weights loaded from an OpenAI archive, a plain
    state dict or a Hugging Face directory get the same hash.
    """
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().to("cpu", torch.float32).contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


__all__ = [
    "CLIP",
    "CONFIGS",
    "CLIPConfig",
    "TextCfg",
    "VisionCfg",
    "build_clip",
    "get_config",
    "list_configs",
    "parameter_count",
    "state_dict_sha256",
    "state_shapes",
]

