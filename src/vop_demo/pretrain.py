"""Pretrain the bundled tiny CLIP (``tiny-synthetic``) on the demo world's stills.

The demo's backbone plays the part of OpenAI CLIP: it must read every word the video captions
use and know what each event looks like in a *photo*, while knowing nothing of time. So it is
pretrained, from a fixed seed on CPU, on still images whose captions cover every word and
event of the world, each event shown by a still cue (:mod:`vop_demo.world`):

    python -m vop_demo.pretrain        # writes vop/assets/tiny-synthetic.{safetensors,json} (the library's)
    python -m vop_demo.pretrain --world 'small_large=[1.5,9.5]' --out DIR   # stills of another world

Training is CLIP's: symmetric InfoNCE (the project's ``contrastive_loss``, with identical
captions in a batch counted as positives of each other) and a learned logit scale, AdamW,
warm-up then cosine decay. Batches are made of *twins* (one scene with an event and with the
reversed event, same wording), so "moves left" meets "moves right" and "from red to blue" meets
"from blue to red" in every batch: the text tower must learn direction and word order.

Some plain photos (no cue) carry both event captions as positives: a photo of a moment looks the
same played either way, and such photos teach the image tower what an event's objects look like
without a cue, which is what a video frame shows (the zero-shot calibration G2 needs them). Their
caption embeddings are detached (``event_text_grad=False``): with gradients, those photos pull
each caption towards its twin (twin cosine 0.67 on the video captions, against G3's 0.6; without
such photos at all, 0.52 but zero-shot InfoNCE 4.28 on video batches, G2 fails).

The JSON record next to the weights holds the config, seed, data recipe, the sha256 of the file
and of the weights, the token ids seen in pretraining (the vocabulary check G1 reads them) and
zero-shot results on held-out stills. Only the token-embedding rows seen in pretraining are
stored (the others were never trained and load as zero rows), which keeps the file small.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from vop_demo.world.spec import WorldSpec


def probe_configs() -> dict:
    """CLIP architectures the demo's probes pretrain that the library does not name: the bundled
    backbone at width 96 (the width probe of docs/demo-notes.md; not bundled). A file saved from
    one carries its config, so ``load_clip`` reads it back without this table."""
    from vop.backbone.clip import CLIPConfig, TextCfg, VisionCfg

    return {"tiny-synthetic-96": CLIPConfig("tiny-synthetic-96", 96, VisionCfg(96, 6, 4, 8, 32), TextCfg(96, 4, 4))}


@dataclass(frozen=True)
class PretrainConfig:
    config: str = "tiny-synthetic"  # CLIP architecture (a library config or one of probe_configs()); the model's name
    seed: int = 0  # model init and batch order
    data_seed: int = 1000  # training stills; held-out stills use data_seed + 1
    train_twins: int = 12000  # twin pairs of stills (2 images each)
    eval_twins: int = 500
    steps: int = 4000
    batch_twins: int = 64  # 128 stills per batch
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup: int = 150
    threads: int = 1
    plain_share: float = 0.4  # twins drawn as plain photos (no cue) ...
    event_share: float = 0.25  # ... of which this share is captioned by the two event captions ...
    event_text_grad: bool = False  # ... which teach the image tower only (their text is detached)


def make_stills(cfg: PretrainConfig, held_out: bool = False, spec: WorldSpec | None = None):
    """(uint8 images ``[2N, H, W, 3]``, captions, positive groups) of the training or held-out twins,
    drawn in the world of ``spec`` (default: the demo's)."""
    from vop_demo.world.stills import still_batch

    spec = spec or WorldSpec()
    if held_out:
        return still_batch(cfg.eval_twins, cfg.data_seed + 1, 0, spec, cfg.plain_share, cfg.event_share)
    return still_batch(cfg.train_twins, cfg.data_seed, 0, spec, cfg.plain_share, cfg.event_share)


def trim_tokens(tokens):
    """Drop padding columns after the longest caption: ``[N, 77] -> [N, L]``. Exact: the text
    transformer is causal and reads out at EOT, so later positions never reach an output."""
    length = int((tokens != 0).sum(dim=1).max())
    return tokens[:, :length]


def positives(captions, groups) -> torch.Tensor:  # noqa: F821 - torch imported lazily
    """``[N, N]`` bool: the same caption, or the same positive group (see ``still_batch``)."""
    import numpy as np
    import torch

    c, g = np.asarray(captions), np.asarray(groups)
    return torch.from_numpy((c[:, None] == c[None, :]) | (g[:, None] == g[None, :]))


def batch_loss(model, images, tokens, captions, groups, text_grad: bool = True):
    """Multi-positive symmetric InfoNCE at the model's own (learned) logit scale. With
    ``text_grad=False`` the text embeddings of plain photos' event captions are detached: a
    photo that fits both twins then moves only the image tower, and cannot pull the twins'
    texts together."""
    import torch
    import torch.nn.functional as F

    from vop.data.transforms import clip_preprocess
    from vop.train.loss import contrastive_loss
    from vop_demo.world.stills import PLAIN_EVENT

    img = F.normalize(model.encode_image(clip_preprocess(images, size=model.cfg.vision.image_size)), dim=-1)
    txt = F.normalize(model.encode_text(trim_tokens(tokens)), dim=-1)
    if not text_grad:
        detach = torch.tensor([g.startswith(PLAIN_EVENT) for g in groups])
        txt = torch.where(detach[:, None], txt.detach(), txt)
    scale = model.logit_scale.clamp(max=math.log(100)).exp()
    return contrastive_loss(txt, img, scale, positives=positives(captions, groups))


def train(cfg: PretrainConfig, progress: bool = True, spec: WorldSpec | None = None):
    """Pretrain from scratch on stills of ``spec``'s world (default: the demo's); returns the frozen
    CLIP, the loss history and the token ids seen."""
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from vop import build_clip, tokenize
    from vop.train.optim import build_optimizer, build_scheduler

    torch.set_num_threads(cfg.threads)
    model = build_clip(probe_configs().get(cfg.config, cfg.config), seed=cfg.seed)
    for p in model.parameters():
        p.requires_grad_(True)
    model.train()
    images, captions, groups = make_stills(cfg, spec=spec)
    tokens = tokenize(captions)
    seen = sorted(int(t) for t in torch.unique(tokens) if t != 0)
    full_table = model.token_embedding
    model.token_embedding = _seen_token_embedding(full_table, seen)  # AdamW over ~100 rows, not 49,408
    opt = build_optimizer(list(model.named_parameters()), cfg.lr, cfg.weight_decay, betas=(0.9, 0.98), eps=1e-6)
    sched = build_scheduler(opt, cfg.steps, cfg.warmup / cfg.steps)
    order = np.random.default_rng(cfg.seed)
    losses = []
    bar = tqdm(range(cfg.steps), desc="pretrain", disable=not progress)
    for step in bar:
        twins = order.choice(cfg.train_twins, size=cfg.batch_twins, replace=False)
        idx = np.stack([2 * twins, 2 * twins + 1], axis=1).reshape(-1)  # twins side by side
        loss = batch_loss(model, images[idx], tokens[idx], [captions[i] for i in idx], [groups[i] for i in idx],
                          cfg.event_text_grad)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 25 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-25:]):.3f}", scale=f"{model.logit_scale.exp().item():.1f}")
    with torch.no_grad():
        full_table.weight[seen] = model.token_embedding.weight
    model.token_embedding = full_table
    return model.freeze(), losses, seen


def _seen_token_embedding(full, seen):
    """The token embedding restricted to the ids seen in pretraining: the same lookup through a
    small trainable table (padding after EOT maps to row 0; it never reaches the read-out)."""
    import torch
    from torch import nn

    class SeenTokenEmbedding(nn.Module):
        def __init__(self):
            super().__init__()
            remap = torch.zeros(full.num_embeddings, dtype=torch.long)
            remap[seen] = torch.arange(len(seen))
            self.register_buffer("remap", remap)
            self.weight = nn.Parameter(full.weight.detach()[seen].clone())  # [S, D]

        def forward(self, ids):
            return self.weight[self.remap[ids]]  # [N, L, D]

    return SeenTokenEmbedding()


@dataclass
class StillScores:
    t2i_r1: float  # held-out stills, identical captions count as correct
    chance_r1: float
    direction_accuracy: float  # % of stills scoring their own caption above the twin's
    twin_cosine: float  # mean text cosine of a caption and its direction-reversed twin
    infonce: float  # zero-shot loss at the frozen scale on held-out twin batches


def still_scores(model, images, captions, groups, batch_twins: int = 64) -> StillScores:
    """Zero-shot checks of a (frozen) backbone on held-out stills (twins ``2i``, ``2i+1``);
    direction accuracy and twin cosine over the twins drawn with a cue."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from vop import tokenize
    from vop.data.transforms import clip_preprocess
    from vop.eval.metrics import retrieval_metrics
    from vop.train.loss import contrastive_loss

    with torch.no_grad():
        img = F.normalize(model.encode_image(clip_preprocess(images, size=model.cfg.vision.image_size)), dim=-1)
        txt = F.normalize(model.encode_text(trim_tokens(tokenize(captions))), dim=-1)
        sim = txt @ img.t()  # [N, N]
        pos = positives(captions, groups).numpy()
        r1 = retrieval_metrics(sim, [np.flatnonzero(row) for row in pos])["R@1"]
        own = np.arange(len(captions))
        twin = own ^ 1
        cue = np.array([groups[i] != groups[j] and captions[i] != captions[j] for i, j in zip(own, twin)])
        s = sim.numpy()
        direction = float(100 * (s[own, own] > s[twin, own])[cue].mean())  # image i: own vs twin caption
        twin_cos = float((txt[own] * txt[twin]).sum(-1).numpy()[cue].mean())
        scale = model.logit_scale.exp()
        n = min(2 * batch_twins, len(captions))
        losses = [float(contrastive_loss(txt[i:i + n], img[i:i + n], scale,
                                         positives=positives(captions[i:i + n], groups[i:i + n])))
                  for i in range(0, len(captions) - n + 1, n)]
    return StillScores(r1, 100.0 / len(set(captions)), direction, twin_cos, float(np.mean(losses)))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run(cfg: PretrainConfig, out_dir: Path, progress: bool = True, world: dict | None = None) -> dict:
    """Pretrain, save ``<config>.safetensors`` (fp16, seen token rows only) and its JSON record.
    ``world`` changes fields of the stills' ``WorldSpec`` (``{"small_large": [1.5, 9.5]}``: a
    backbone for a probe of another world, ``benchmarks/demo_probe.py --world ... --backbone``)."""
    import copy

    import torch

    from vop.backbone.loading import load_clip, save_clip
    from vop_demo.world.spec import changed_spec

    start = time.time()
    world = world or {}
    spec = changed_spec(world)
    model, losses, seen = train(cfg, progress, spec)
    seconds = time.time() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = save_clip(copy.deepcopy(model).to(torch.float16), out_dir / f"{cfg.config}.safetensors",
                        keep_tokens=seen)
    shipped = load_clip(weights)  # what users get: fp16 storage read back as float32
    eval_images, eval_captions, eval_groups = make_stills(cfg, held_out=True, spec=spec)
    record = {
        "name": cfg.config,
        "clip_config": model.cfg.to_dict(),
        "pretrain_config": asdict(cfg),
        "world_spec": asdict(spec),
        "data": ("vop_demo.world.still_batch: twins (an event and its reverse on one scene) of 1-2 shapes on photo "
                 f"backgrounds; {1 - cfg.plain_share:.0%} drawn with a still cue of the event, {cfg.plain_share:.0%} "
                 f"plain photos ({1 - cfg.event_share:.0%} of them with a static caption, {cfg.event_share:.0%} "
                 "motion-blurred like a video frame with both event captions as positives"
                 + ("" if cfg.event_text_grad else ", those texts detached")
                 + "); captions from STILL_TEMPLATES/STATIC_TEMPLATES"),
        "command": "python -m vop_demo.pretrain" + _cli_suffix(cfg, world),
        "train_seconds": round(seconds, 1),
        "final_loss_mean_last_100": sum(losses[-100:]) / max(1, len(losses[-100:])),
        "logit_scale": float(shipped.logit_scale.exp()),
        "machine": f"{torch.get_num_threads()}-thread CPU ({platform.machine()}), torch {torch.__version__}",
        "seen_tokens": seen,
        "weights_file": weights.name,
        "file_sha256": file_sha256(weights),
        "file_bytes": weights.stat().st_size,
        "weights_sha256": shipped.weights_sha256,
        "zero_shot_heldout_stills": asdict(still_scores(shipped, eval_images, eval_captions, eval_groups)),
    }
    (out_dir / f"{cfg.config}.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def _cli_suffix(cfg: PretrainConfig, world: dict) -> str:
    default = PretrainConfig()
    args = "".join(f" --{k.replace('_', '-')} {v}" for k, v in asdict(cfg).items() if getattr(default, k) != v)
    if world:  # quoted for a shell: JSON lists and strings
        args += " --world" + "".join(f" '{k}={json.dumps(v, separators=(',', ':'))}'" for k, v in world.items())
    return args


def _bool(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return text.lower() == "true"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vop_demo.pretrain", description=__doc__.split("\n\n")[0])
    for name, value in asdict(PretrainConfig()).items():
        kind = _bool if isinstance(value, bool) else type(value)
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=value)
    parser.add_argument("--world", nargs="*", default=[], metavar="KEY=VALUE",
                        help="WorldSpec fields of the stills, VALUE in JSON (default: the demo's world)")
    parser.add_argument("--out", type=Path,
                        help="folder for <config>.safetensors/.json (default: vop/assets, the bundled model's)")
    args = vars(parser.parse_args(argv))
    out, world = args.pop("out"), args.pop("world")
    from vop.backbone.loading import assets_dir
    from vop_demo.world.spec import changed_spec, parse_assignments

    try:
        world = parse_assignments(world, "--world")
        changed_spec(world)  # refused before any work
    except ValueError as err:
        parser.error(str(err))
    cfg = PretrainConfig(**args)
    out = out or assets_dir()
    record = run(cfg, out, world=world)
    zs = record["zero_shot_heldout_stills"]
    print(f"wrote {out / record['weights_file']} ({record['file_bytes'] / 1e6:.2f} MB) in {record['train_seconds']} s")
    print(f"held-out stills: t2i R@1 {zs['t2i_r1']:.1f} (chance {zs['chance_r1']:.1f}), direction accuracy "
          f"{zs['direction_accuracy']:.1f}%, twin cosine {zs['twin_cosine']:.3f}, InfoNCE {zs['infonce']:.2f}, "
          f"logit scale {record['logit_scale']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
