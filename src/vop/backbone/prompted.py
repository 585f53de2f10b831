"""The prompted forward passes: the one place that decides where prompt tokens go.

Prompt *components* (``vop.prompts``) own parameters and only say which tokens go into a
layer; this module decides where they go, runs CLIP's frozen blocks through the seams of
``vop.backbone.clip`` and strips the prompt outputs again after every layer ("deep" prompts:
every layer gets fresh tokens, paper Eq. 3-4).

Because a prompt's output is discarded after every layer, it is never computed: prompts enter a
block as key/value-only ``context`` (``Transformer.run_block(..., context=p)``). The result is
the same as running the block on the concatenated sequence and stripping the prompt positions
(tested against that reference), but the prompt tokens cost only their key/value projection,
not a query row, the output projection or the MLP (the MLP is 2/3 of a block's FLOPs). For
ViT-B/32 with 8 visual prompts per frame this cuts the extra linear-layer work of a prompted block
from 16% (58 instead of 50 tokens at 12 d^2 each) to about 3% (8 x 2 d^2 against 50 x 12 d^2).

Placement rules:

* text: ``[prompts, words]`` under the causal mask, so every word attends to all prompts.
  Words keep CLIP's positional embeddings of their own positions; prompts get none. Because the
  prompts are stripped after each layer, the EOT read-out index is the plain one (it would be
  ``eot + n_prompts`` inside a layer).
* text, ``modelscope`` placement (:func:`encode_text_modelscope`, for adapters imported from
  the authors' ModelScope port; not for training): the port's layout, reproduced exactly.
* vision: ``[CLS, prompts, patches]`` (attention is not causal here, so the prompts' place in
  the key order does not matter; they are passed as ``context``). Layer-1 prompts are inserted before ``ln_pre``; since
  LayerNorm acts per token, ``ln_pre(cat(cls, p, patches)) == cat(ln_pre(cls), ln_pre(p), ...)``,
  so we normalise the image tokens first and pass the layer-1 prompts through ``ln_pre`` alone.
  Later layers take raw prompts.
* inter-frame deep layers (``vop-f``): after the shallow layers a frame positional embedding is
  added to every token of a frame and the frames of a video are joined into one sequence
  ``[F CLS, video prompts, F x P patches]`` run by the remaining frozen blocks.

With zero prompt tokens every pass equals plain CLIP exactly (tested).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

from vop.backbone.clip import CLIP

TextPromptFn = Callable[[int], "torch.Tensor | None"]  # layer -> [n, D] or None


class ShallowPrompts(Protocol):
    """A frame-level visual prompt component (``vop.prompts``)."""

    def prompts(self, layer: int, cls: torch.Tensor) -> torch.Tensor | None:
        """``cls`` is the layer input's [CLS] per frame ``[B, F, D]``; returns ``[B, F, n, D]``."""


class DeepFrames(Protocol):
    """The inter-frame deep layers of ``vop-f`` (``vop.prompts.frame``)."""

    start: int  # index of the first deep layer (K^s, 0-based)
    frame_pos: torch.Tensor  # [F, D]

    def prompts(self, layer: int) -> torch.Tensor | None:
        """Video-level prompt tokens for deep ``layer``: ``[n, D]``."""


def encode_text(clip: CLIP, tokens: torch.Tensor, prompts: TextPromptFn | None = None) -> torch.Tensor:
    """``[N, L]`` token ids -> ``[N, E]`` (not normalised) with per-layer prompts before the words."""
    eot = clip.eot_index(tokens)
    tokens = cut_after_eot(tokens, eot)  # [N, L'] with L' = longest caption incl. EOT
    x = clip.embed_text(tokens)  # [N, L', D]
    for i in range(clip.transformer.layers):
        p = prompts(i) if prompts is not None else None
        context = None if p is None else p.to(x.dtype)[None]  # [1, n, D], before the words
        x = clip.transformer.run_block(i, x, is_causal=True, context=context)  # [N, L', D]
    return clip.pool_text(x, eot)


def cut_after_eot(tokens: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
    """``[N, L]`` -> ``[N, L']``, cut after the batch's last EOT (as in ``CLIP.encode_text``: under
    the causal mask, prompts first, the EOT output never sees the padding after it).

    The cut length depends on the data, which an exported graph cannot hold: under
    ``torch.export`` (``vop.runtime``) the tokens pass unchanged and the caller cuts them before
    the graph runs (``vop.runtime.export.text_input``), which the exported graph's dynamic length allows.
    """
    if tokens.shape[0] == 0 or torch.compiler.is_exporting():
        return tokens
    return tokens[:, : int(eot.max()) + 1]


def fit_slots(tokens: torch.Tensor, slots: int) -> torch.Tensor:
    """``[N, L]`` ids -> ``[N, slots]``: zero-padded, or cut to ``SOT, pieces, EOT`` in ``slots``
    ids (the port's tokenizer truncation: the first ``slots - 2`` pieces, then EOT)."""
    n, length = tokens.shape
    if length < slots:
        return torch.cat([tokens, tokens.new_zeros(n, slots - length)], dim=1)
    eot = tokens.argmax(dim=-1)  # [N]
    out = tokens[:, :slots].clone()
    # a caption whose EOT falls after the slots ends with its EOT id (torch.where, not a boolean
    # mask: the same result, and exportable by vop.runtime)
    out[:, slots - 1] = torch.where(eot >= slots, tokens.gather(1, eot[:, None])[:, 0], out[:, slots - 1])
    return out


def encode_text_modelscope(clip: CLIP, tokens: torch.Tensor, prompts: torch.Tensor,
                           prefix_length: int) -> torch.Tensor:
    """``[N, L]`` ids -> ``[N, E]`` (not normalised) with the ModelScope port's text placement.

    ``prompts`` ``[K, n, D]``. Captions take ``S = context - n`` word slots (longer ones are cut
    as the port's tokenizer cuts them). Every layer runs the joined sequence
    ``[slot 0, prefix prompts, slots 1..S-2, suffix prompts, slot S-1]`` (``context`` tokens)
    under the causal mask and drops the prompt outputs again; layer 0 adds CLIP's positional
    embeddings to the whole joined sequence (so prompts get positions and words are shifted).
    The read-out is the last layer's output at ``EOT + n`` of the joined sequence, as the port
    computes it: a padding slot after EOT, or a suffix prompt for long captions. Under the causal
    mask nothing after the batch's last read-out position matters, so the sequence is cut there.
    """
    layers, n, _ = prompts.shape
    if layers != clip.transformer.layers:
        raise ValueError(f"text prompts for {layers} layers, the text encoder has {clip.transformer.layers}")
    slots = clip.cfg.text.context_length - n
    if slots < 2:
        raise ValueError(f"{n} text prompts leave {slots} word slots of {clip.cfg.text.context_length}")
    suffix_start = prefix_length
    tokens = fit_slots(tokens, slots)  # [N, S]
    read = clip.eot_index(tokens) + n  # [N]
    pos = torch.arange(slots, device=tokens.device)  # joined-sequence position of each word slot
    pos[1:] += prefix_length
    pos[-1] += n - prefix_length
    if torch.compiler.is_exporting():  # vop.runtime: a data-dependent cut cannot be exported; run it all
        length, kept = slots + n, torch.arange(slots, device=tokens.device)
    else:
        length = int(read.max()) + 1 if tokens.shape[0] else 1
        kept = torch.nonzero(pos < length).flatten()  # slots inside the cut sequence
    x = clip.token_embedding(tokens)  # [N, S, D]
    b = x.shape[0]
    out = x
    for i in range(layers):
        p = prompts[i].to(x.dtype)  # [n, D]
        seq = torch.cat([x[:, :1], p[:suffix_start].expand(b, -1, -1), x[:, 1:-1],
                         p[suffix_start:].expand(b, -1, -1), x[:, -1:]], dim=1)  # [N, S + n, D]
        if i == 0:
            seq = seq + clip.positional_embedding.to(x.dtype)
        out = clip.transformer.run_block(i, seq[:, :length], is_causal=True)  # [N, length, D]
        if i + 1 < layers:
            x = x.index_copy(1, kept, out[:, pos[kept]])  # slots after the cut are never read
    return clip.pool_text(out, read)


def _shallow_layer(clip: CLIP, i: int, x: torch.Tensor, frames: int, shallow: ShallowPrompts | None):
    """One frame-level layer: ``x`` ``[B*F, 1 + P, D]`` -> same shape."""
    visual = clip.visual
    p = None
    if shallow is not None:
        bf, _, d = x.shape
        p = shallow.prompts(i, x[:, 0].reshape(bf // frames, frames, d))  # [B, F, n, D] or None
    if p is None:
        return visual.transformer.run_block(i, x)
    p = p.flatten(0, 1).to(x.dtype)  # [B*F, n, D]
    if i == 0:
        p = visual.ln_pre(p)  # layer-1 prompts are inserted before ln_pre (see module doc)
    return visual.transformer.run_block(i, x, context=p)  # [B*F, 1 + P, D]


def _deep_layers(clip: CLIP, x: torch.Tensor, frames: int, deep: DeepFrames) -> torch.Tensor:
    """Inter-frame layers ``deep.start..K-1``: ``x`` ``[B*F, 1 + P, D]`` -> final CLS ``[B, F, D]``."""
    bf, length, d = x.shape
    b = bf // frames
    x = x.reshape(b, frames, length, d) + deep.frame_pos.to(x.dtype)[None, :, None, :]  # [B, F, 1+P, D]
    cls = x[:, :, 0]  # [B, F, D]
    patches = x[:, :, 1:].reshape(b, frames * (length - 1), d)  # [B, F*P, D]
    x = torch.cat([cls, patches], dim=1)  # [B, F + F*P, D]
    for i in range(deep.start, clip.visual.transformer.layers):
        p = deep.prompts(i)
        context = None if p is None else p.to(x.dtype)[None]  # [1, n, D]
        x = clip.visual.transformer.run_block(i, x, context=context)  # [B, F + F*P, D]
    return x[:, :frames]


def encode_frames(clip: CLIP, video: torch.Tensor, shallow: ShallowPrompts | None = None,
                  deep: DeepFrames | None = None) -> torch.Tensor:
    """``[B, F, 3, H, W]`` -> per-frame embeddings ``[B, F, E]`` (not normalised)."""
    b, f = video.shape[:2]
    visual = clip.visual
    x = visual.ln_pre(visual.embed(video.flatten(0, 1)))  # [B*F, 1 + P, D]
    shallow_layers = deep.start if deep is not None else visual.transformer.layers
    for i in range(shallow_layers):
        x = _shallow_layer(clip, i, x, f, shallow)
    if deep is not None and deep.start < visual.transformer.layers:
        cls = _deep_layers(clip, x, f, deep)  # [B, F, D]
    else:
        cls = x[:, 0].reshape(b, f, -1)  # [B, F, D]
    return visual.pool(cls)  # ln_post + proj act on the last dim: [B, F, E]
