"""Pretrain the bundled tiny CLIP on single synthetic frames with static captions.

Why: ``vop demo`` needs a frozen image-text model that knows the synthetic world's *images*
(shape, colour, size, position) but nothing about *motion*, the way OpenAI CLIP knows photos
but not video. Nothing can be downloaded, so the project makes its own, from a fixed seed, on
CPU in a few minutes:

    python -m vop.pretrain                # writes src/vop/assets/tiny-synthetic.{safetensors,json}

Training is plain CLIP: symmetric InfoNCE over a batch of (frame, caption) pairs with a
learnable temperature, AdamW, linear warm-up then cosine decay. The captions come from
:func:`vop.data.synthetic.static_frames` and never contain an event word. The result is
measured as zero-shot image<->text retrieval on held-out frames (a different data seed) and
written, with everything needed to reproduce it, to the JSON record next to the weights.
Weights are stored in fp16 (the 49,408-row token embedding dominates the file); the recorded
sha256 is that of the weights as ``vop.load_clip`` returns them.
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

DEFAULT_ASSETS = Path(__file__).resolve().parent / "assets"


@dataclass(frozen=True)
class PretrainConfig:
    config: str = "tiny-synthetic"  # CLIP architecture; also the bundled model's name
    seed: int = 0  # model init and batch order
    data_seed: int = 1000  # training frames; held-out frames use data_seed + 1
    train_frames: int = 8000
    eval_frames: int = 500
    steps: int = 3000
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup: int = 100
    threads: int = 1  # one thread: reproducible reductions, and robust on a shared CPU


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


def trim_tokens(tokens):
    """Drop padding columns after the longest caption: ``[N, 77] -> [N, L]``.

    Exact, not an approximation: the text transformer is causal and reads out at the EOT
    token, so positions after the last EOT never influence any output.
    """
    length = int((tokens != 0).sum(dim=1).max())
    return tokens[:, :length]


def make_data(cfg: PretrainConfig, held_out: bool = False):
    """(images uint8 ``[N, H, W, 3]``, tokens ``[N, 77]``, captions) of the training or held-out frames."""
    from vop import tokenize
    from vop.data.synthetic import static_frames

    n, seed = (cfg.eval_frames, cfg.data_seed + 1) if held_out else (cfg.train_frames, cfg.data_seed)
    images, captions = static_frames(n, seed)  # drawn at the videos' size; resized to the model's input
    return images, tokenize(captions), captions


def contrastive_loss(model, images, tokens):
    """Symmetric InfoNCE of a batch of matching (image, caption) pairs."""
    import torch
    import torch.nn.functional as F

    img = F.normalize(model.encode_image(images), dim=-1)  # [B, E]
    txt = F.normalize(model.encode_text(trim_tokens(tokens)), dim=-1)  # [B, E]
    logits = model.logit_scale.clamp(max=math.log(100)).exp() * img @ txt.t()  # [B, B]
    target = torch.arange(images.shape[0])
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def train(cfg: PretrainConfig, progress: bool = True):
    """Pretrain from scratch; returns the trained (frozen) CLIP and the loss history."""
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from vop import build_clip
    from vop.data.transforms import clip_preprocess

    torch.set_num_threads(cfg.threads)
    model = build_clip(cfg.config, seed=cfg.seed)
    for p in model.parameters():
        p.requires_grad_(True)
    model.train()
    train_img, train_tok, _ = make_data(cfg)
    size = model.cfg.vision.image_size
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    order_rng = np.random.default_rng(cfg.seed)
    losses = []
    bar = tqdm(range(cfg.steps), desc="pretrain", disable=not progress)
    for step in bar:
        idx = order_rng.choice(len(train_img), size=cfg.batch_size, replace=False)
        images = clip_preprocess(train_img[idx], size=size)  # [B, 3, S, S]
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = contrastive_loss(model, images, train_tok[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    return model.freeze(), losses


def zero_shot_retrieval(model, images, tokens, captions) -> dict:
    """Image->text and text->image R@1/5/10, MdR, MnR on held-out frames.

    Identical caption strings count as correct for each other (a "purple triangle" caption
    can describe several frames), so duplicates do not count as errors.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    from vop.data.transforms import clip_preprocess
    from vop.eval.metrics import retrieval_metrics

    with torch.no_grad():
        img = F.normalize(model.encode_image(clip_preprocess(images, size=model.cfg.vision.image_size)), dim=-1)
        txt = F.normalize(model.encode_text(trim_tokens(tokens)), dim=-1)
    sim = txt @ img.t()  # [N captions, N images]
    same = np.array(captions)[:, None] == np.array(captions)[None, :]  # [N, N]
    positives = [np.flatnonzero(row) for row in same]
    return {"t2i": retrieval_metrics(sim, positives), "i2t": retrieval_metrics(sim.t(), positives),
            "chance_R@1": 100.0 / len(captions)}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_bundle(model, cfg: PretrainConfig, out_dir: Path, record: dict) -> tuple[Path, Path]:
    """fp16 safetensors (loadable as ``vop.load_clip(cfg.config)`` when in ``vop/assets``) + JSON record."""
    import copy

    import torch

    from vop.backbone.loading import load_clip, save_clip

    out_dir.mkdir(parents=True, exist_ok=True)
    weights = save_clip(copy.deepcopy(model).to(torch.float16), out_dir / f"{cfg.config}.safetensors")
    loaded = load_clip(weights)  # what users get: fp16 storage read back as float32
    record.update(
        weights_file=weights.name,
        file_sha256=file_sha256(weights),
        file_bytes=weights.stat().st_size,
        weights_sha256=loaded.weights_sha256,
    )
    path = out_dir / f"{cfg.config}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    return weights, path


def run(cfg: PretrainConfig, out_dir: Path, progress: bool = True) -> dict:
    import torch

    from vop.backbone.loading import load_clip

    start = time.time()
    model, losses = train(cfg, progress)
    train_seconds = time.time() - start
    eval_img, eval_tok, eval_cap = make_data(cfg, held_out=True)
    record = {
        "name": cfg.config,
        "clip_config": model.cfg.to_dict(),
        "pretrain_config": asdict(cfg),
        "data": "vop.data.synthetic.static_frames: single frames of 1-2 shapes (3 shapes x 5 colours) on "
                "textured backgrounds; captions name colour, shape, optional size and position; no motion",
        "final_loss_mean_last_50": sum(losses[-50:]) / max(1, len(losses[-50:])),
        "train_seconds": round(train_seconds, 1),
        "machine": f"shared {torch.get_num_threads()}-thread CPU ({platform.machine()}), torch {torch.__version__}",
        "command": "python -m vop.pretrain" + _cli_suffix(cfg),
    }
    weights, record_path = save_bundle(model, cfg, out_dir, record)
    record["zero_shot_heldout"] = zero_shot_retrieval(load_clip(weights), eval_img, eval_tok, eval_cap)
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    return record


def _cli_suffix(cfg: PretrainConfig) -> str:
    default = PretrainConfig()
    return "".join(f" --{k.replace('_', '-')} {v}" for k, v in asdict(cfg).items() if getattr(default, k) != v)


def parse_args(argv=None) -> tuple[PretrainConfig, Path]:
    parser = argparse.ArgumentParser(prog="python -m vop.pretrain", description=__doc__.split("\n\n")[0])
    for name, value in asdict(PretrainConfig()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--out", type=Path, default=DEFAULT_ASSETS, help="folder for <config>.safetensors/.json")
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    return PretrainConfig(**args), out


def main(argv=None) -> int:
    cfg, out = parse_args(argv)
    record = run(cfg, out)
    zs = record["zero_shot_heldout"]
    print(f"wrote {out / record['weights_file']} ({record['file_bytes'] / 1e6:.2f} MB) in {record['train_seconds']} s")
    print(f"zero-shot on {cfg.eval_frames} held-out frames: t2i R@1 {zs['t2i']['R@1']:.1f}  "
          f"i2t R@1 {zs['i2t']['R@1']:.1f}  (chance {zs['chance_R@1']:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
