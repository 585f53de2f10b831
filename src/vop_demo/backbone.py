"""The demo's backbone: the bundled ``tiny-synthetic`` CLIP, loaded through
:func:`vop.backbone.reference.resolve_backbone` like every command loads one (its weights must
match the sha256 of its record ``vop/assets/tiny-synthetic.json``), and the backbone claims
G1-G3 measured on a world with no training involved."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from vop_demo.settings import BACKBONE


def bundled_record_path(name: str = BACKBONE) -> Path:
    """``vop/assets/<name>.json``: how the bundled weights were made and what they reached."""
    from vop.backbone.loading import assets_dir

    return assets_dir() / f"{name}.json"


def bundled_record(name: str = BACKBONE) -> dict:
    return json.loads(bundled_record_path(name).read_text())


@functools.lru_cache(maxsize=4)
def bundled_sha256(name: str = BACKBONE) -> str:
    """The bundled backbone's weights sha256, from its record (runs made on other weights are not reused)."""
    return bundled_record(name)["weights_sha256"]


def load_backbone(file: str | Path | None = None):
    """The frozen CLIP the demo adapts: ``file`` (a ``.safetensors`` from ``python -m
    vop_demo.pretrain --out DIR``), or else the bundled one, checked against its record."""
    from vop.backbone.reference import BackboneRef, resolve_backbone

    if file is not None:
        return resolve_backbone(None, file)
    record = bundled_record()
    ref = BackboneRef(record["name"], record["weights_sha256"], source=BACKBONE, format="bundled",
                      config=record["clip_config"])
    return resolve_backbone(ref, recorded_in=bundled_record_path())


def backbone_checks(clip, world: Path, meta: dict, cache_dir: Path, batch_size: int, batches: int = 40) -> dict:
    """G1-G3 numbers for the frozen backbone on this world (no training involved)."""
    import numpy as np
    import torch

    from vop import tokenize
    from vop.data.annotations import load_records
    from vop.data.cache import FrameCache
    from vop.eval.retrieval import encode_texts, encode_videos
    from vop.model import build_model
    from vop.train.loss import contrastive_loss
    from vop_demo.pretrain import trim_tokens

    record = bundled_record(clip.cfg.name)
    seen = set(record["seen_tokens"])
    captions = [t for c in meta["clips"] for t in c["captions"]]
    tokens = trim_tokens(tokenize(captions))
    unseen = sorted({int(t) for t in torch.unique(tokens) if int(t) != 0 and int(t) not in seen})

    model = build_model(clip, "zeroshot", frames=meta["spec"]["frames"])
    cpu = torch.device("cpu")
    test = [c for c in meta["clips"] if c["split"] == "test"]
    text = encode_texts(model, [t for c in test for t in c["captions"]], 256, cpu, progress=False)
    twin = encode_texts(model, [t for c in test for t in c["twins"]], 256, cpu, progress=False)
    twin_cos = float((text * twin).sum(-1).mean())

    # G2: zero-shot InfoNCE at the frozen scale on batches made as training makes them
    records = load_records("csv", world, split="train", videos_dir=world)
    video, kept = encode_videos(model, records, meta["spec"]["size"], 256, cpu, cache=FrameCache(cache_dir),
                                progress=False)
    by_id = {Path(records[i].video_id).stem: video[n] for n, i in enumerate(kept)}
    pairs = sorted({c["pair"] for c in meta["clips"] if c["split"] == "train"})
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(batches):
        chosen = rng.choice(len(pairs), size=batch_size // 2, replace=False)
        ids = [pairs[p] + half for p in chosen for half in "ab"]
        texts = [meta["by_id"][i]["captions"][rng.integers(len(meta["by_id"][i]["captions"]))] for i in ids]
        t = encode_texts(model, texts, batch_size, cpu, progress=False)
        v = torch.stack([by_id[i] for i in ids])
        losses.append(float(contrastive_loss(t, v, model.logit_scale())))
    stills = record["zero_shot_heldout_stills"]
    return {"unseen_tokens": unseen, "caption_tokens": len(torch.unique(tokens)),
            "twin_cosine": twin_cos, "still_direction_accuracy": stills["direction_accuracy"],
            "zeroshot_infonce": float(np.mean(losses)), "infonce_batch": batch_size,
            "logit_scale": float(model.logit_scale())}
