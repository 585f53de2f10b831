"""Symmetric InfoNCE with CLIP's frozen logit scale, gathered across ranks."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vop.train.distributed import current, gather_with_grad


def contrastive_loss(text: torch.Tensor, video: torch.Tensor, logit_scale: torch.Tensor | float,
                     positives: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of text->video and video->text cross-entropy; pair ``i`` is the positive of row ``i``.

    ``text``/``video`` are this rank's L2-normalised embeddings ``[b, E]``. Each rank scores its
    own ``b`` rows against all ``world * b`` gathered columns; the mean over ranks (done by DDP's
    gradient averaging) equals the loss of one process holding the whole batch.

    ``positives`` (bool ``[b, world * b]``, optional) marks several correct columns per row, e.g.
    identical captions in one batch; the target spreads evenly over them. It must be a symmetric
    relation between items (``i ~ j``), so the same mask serves both directions.
    """
    info = current()
    all_text, all_video = gather_with_grad(text), gather_with_grad(video)  # [world*b, E]
    labels = torch.arange(text.shape[0], device=text.device) + info.rank * text.shape[0]
    if positives is not None:
        positives = positives.float()
        positives[torch.arange(text.shape[0]), labels] = 1.0  # an item is always its own positive
        labels = positives / positives.sum(dim=1, keepdim=True)  # [b, world*b] target distribution
    logits_t2v = logit_scale * text.float() @ all_video.float().T  # [b, world*b]
    logits_v2t = logit_scale * video.float() @ all_text.float().T  # [b, world*b]
    return 0.5 * (F.cross_entropy(logits_t2v, labels) + F.cross_entropy(logits_v2t, labels))
