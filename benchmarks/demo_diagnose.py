"""Why does no method learn temporal order in ``vop demo``? Two measurements on a finished demo run.

1. **Text side.** Cosine between the text embeddings of *mirrored* temporal captions — the same
   sentence with the event reversed ("a red circle moves left" / "... moves right", "grows" /
   "shrinks", "from red to blue" / "from blue to red") — against captions of different clips
   and against the same sentence with only the actor's colour changed. Frozen encoder and the
   text prompts that ``vop`` / ``vop-f`` learned in the demo run.
2. **Video side** (``vop-f``, ``vop-fc``): size of the learned ``frame_pos`` against the tokens it
   is added to; cosine between a val clip's embedding and the embedding of the same decoded
   frames in reverse order (the partner's content; the partner *file* decodes to slightly
   different pixels, see ``demo_partner_gap.py``) against cosines between different clips; and the
   gradient reaching ``frame_pos`` / deep prompts / text prompts in one grouped training batch.
3. **Pair accuracy split into its two halves** on val: a temporal caption needs
   ``t . (v - v_rev) > 0``; the share of pairs where the *video* difference and the *text*
   difference point the same way (``(t - t_mirror) . (v - v_rev) > 0``) is the ceiling.
4. ``--sweep DIR``: ``vop-f`` under a few cheap training changes (:data:`SWEEP`), 2 seeds,
   scored on the **validation** split only; then, for every run, pair accuracy of the adapter
   validation selected vs the final weights (``checkpoints/last.pt``).

The caption templates are read from ``vop.data.synthetic``'s private tables on purpose: the
mirrored captions must be exactly the generator's sentences with only the event reversed.

Usage: ``python benchmarks/demo_diagnose.py --run /tmp/dgroup`` (a finished ``vop demo --out``
folder) -> ``benchmarks/results/demo_diagnose.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from vop.data.synthetic import _COLOR_TEMPLATES, _MOVE_VERBS, _SIZE_VERBS, _VIS_VERBS, REVERSE_DIRECTION

COLOURS_SWAP = {"red": "blue", "blue": "green", "green": "yellow", "yellow": "purple", "purple": "red"}


def mirrored_caption_pairs(meta: dict, clip_ids: list[str]) -> list[tuple[str, str, str]]:
    """``(caption, event-reversed caption, colour-swapped caption)`` for every template of every clip."""
    out = []
    for cid in clip_ids:
        scene = meta["by_id"][cid]["scene"]
        ev, actor = scene["event"], scene["actor"]
        if ev["kind"] == "color":
            for t in _COLOR_TEMPLATES:
                other = COLOURS_SWAP.get(ev["start"], "red")
                out.append((t.format(shape=actor["shape"], a=ev["start"], b=ev["end"]),
                            t.format(shape=actor["shape"], a=ev["end"], b=ev["start"]),
                            t.format(shape=actor["shape"], a=other, b=ev["end"])))
            continue
        verbs = {"move": _MOVE_VERBS, "size": _SIZE_VERBS, "visibility": _VIS_VERBS}[ev["kind"]]
        rev = REVERSE_DIRECTION[ev["direction"]]
        colour = actor.get("color") or "red"
        for own, mirror in zip(verbs[ev["direction"]], verbs[rev]):
            out.append((f"a {colour} {actor['shape']} {own}", f"a {colour} {actor['shape']} {mirror}",
                        f"a {COLOURS_SWAP.get(colour, 'red')} {actor['shape']} {own}"))
    return out


def _order_parts(name: str, pos: torch.Tensor) -> dict:
    """Norms of the part of a ``[F, D]`` frame embedding that is symmetric under frame reversal
    (it cannot tell a clip from its reverse) and the antisymmetric part (the only one that can)."""
    return {f"{name}_symmetric_norm": float(((pos + pos.flip(0)) / 2).norm()),
            f"{name}_antisymmetric_norm": float(((pos - pos.flip(0)) / 2).norm())}


def _stats(x: torch.Tensor) -> dict:
    return {"mean": float(x.mean()), "min": float(x.min()), "max": float(x.max())}


def text_side(model, triples) -> dict:
    from vop.eval.retrieval import encode_texts

    enc = [encode_texts(model, [t[k] for t in triples], 256, torch.device("cpu"), context_length=32, progress=False)
           for k in range(3)]
    own, mirror, colour = enc
    unrelated = own.roll(7, dims=0)  # another clip's caption (different scene/event)
    return {"cos_mirror": _stats((own * mirror).sum(-1)), "cos_colour_swap": _stats((own * colour).sum(-1)),
            "cos_unrelated": _stats((own * unrelated).sum(-1)),
            "mirror_distance_over_colour_distance": float((own - mirror).norm(dim=-1).mean()
                                                          / (own - colour).norm(dim=-1).mean())}


def load_val(data_dir: Path, cache_dir: Path, model, n: int = 60):
    from vop.data.annotations import load_records
    from vop.data.cache import FrameCache
    from vop.data.dataset import VideoDataset

    records = load_records("csv", data_dir, split="val", videos_dir=data_dir)[:n]
    ds = VideoDataset(records, frames=model.frames, image_size=64, cache=FrameCache(cache_dir), on_error="raise")
    return records, torch.stack([ds[i]["video"] for i in range(len(ds))])  # [V, F, 3, S, S]


@torch.no_grad()
def video_side(model, videos: torch.Tensor) -> dict:
    v = model.encode_video(videos)  # [V, E]
    v_rev = model.encode_video(videos.flip(1))  # the same decoded frames in reverse order
    sim = v @ v.t()
    off = sim[~torch.eye(len(v), dtype=torch.bool)]
    out = {"cos_own_vs_reversed": _stats((v * v_rev).sum(-1)), "cos_between_clips": _stats(off),
           "reversal_distance_over_clip_distance": float((v - v_rev).norm(dim=-1).mean()
                                                        / torch.cdist(v, v).sum() * len(v) * (len(v) - 1))}
    deep = model._part("deep")
    if deep is not None and deep.frame_pos is not None:
        out["frame_pos_norm_per_frame"] = [float(x) for x in deep.frame_pos.norm(dim=-1)]
        out["frame_pos_max_pairwise_distance"] = float(torch.cdist(deep.frame_pos, deep.frame_pos).max())
        out.update(_order_parts("frame_pos", deep.frame_pos))
        out["token_norm_at_deep_start"] = token_norm(model, videos[:8], deep.start)
    return out, v, v_rev


@torch.no_grad()
def token_norm(model, videos, start: int) -> float:
    from vop.backbone import prompted

    clip = model.clip
    x = clip.visual.ln_pre(clip.visual.embed(videos.flatten(0, 1)))
    for i in range(start):
        x = prompted._shallow_layer(clip, i, x, videos.shape[1], model._part("visual"))
    return float(x.norm(dim=-1).mean())


def pair_halves(model, records, meta, v, v_rev) -> dict:
    """Per temporal caption of clip i: does t.(v - v_rev) > 0 (own half), and does the mirrored
    caption's difference agree with the video difference?"""
    from vop.eval.retrieval import encode_texts

    rows = []
    for i, r in enumerate(records):
        cid = Path(r.video_id).stem
        rows += [(i, c) for c in mirrored_caption_pairs(meta, [cid])]
    t = encode_texts(model, [c[0] for _, c in rows], 256, torch.device("cpu"), context_length=32, progress=False)
    tm = encode_texts(model, [c[1] for _, c in rows], 256, torch.device("cpu"), context_length=32, progress=False)
    idx = torch.tensor([i for i, _ in rows])
    dv = v[idx] - v_rev[idx]  # [Q, E]
    own = (t * dv).sum(-1)
    return {"own_caption_prefers_own_order": float(100 * (own > 0).float().mean()),
            "mirror_caption_prefers_reversed": float(100 * (((tm * dv).sum(-1)) < 0).float().mean()),
            "text_and_video_differences_agree": float(100 * (((t - tm) * dv).sum(-1) > 0).float().mean()),
            "mean_abs_score_gap_own_vs_reversed": float(own.abs().mean()), "queries": len(rows)}


def gradient_step(model, data_dir: Path, cache_dir: Path) -> dict:
    """Gradient norms per trainable tensor for one batch of 8 reverse pairs (16 clips)."""
    from vop.backbone.tokenizer import tokenize
    from vop.data.annotations import load_records
    from vop.data.cache import FrameCache
    from vop.data.dataset import VideoTextDataset
    from vop.train.loss import contrastive_loss

    records = load_records("csv", data_dir, split="train", videos_dir=data_dir)[:16]
    ds = VideoTextDataset(records, frames=model.frames, image_size=64, train=True, cache=FrameCache(cache_dir),
                          context_length=32, augment=False)
    items = [ds[i] for i in range(16)]
    video = torch.stack([x["video"] for x in items])
    tokens = tokenize([x["text"] for x in items], context_length=32)
    model.zero_grad()
    loss = contrastive_loss(model.encode_text(tokens), model.encode_video(video), model.logit_scale())
    loss.backward()
    norms = {n: float(p.grad.norm()) for n, p in model.trainable_named_parameters() if p.grad is not None}
    deep = model._part("deep")
    if deep is not None and deep.frame_pos is not None:
        norms.update(_order_parts("frame_pos_grad", deep.frame_pos.grad))
    model.zero_grad()
    return {"loss": float(loss.detach()), "grad_norm": norms}


SWEEP = {  # name -> DemoSettings changes; chosen on *validation* pair accuracy only
    "demo default (F=4, 6 epochs, lr 1e-2)": {},
    "24 epochs": {"epochs": 24},
    "F=8 frames": {"frames": 8},
    "lr 3e-2": {"lr": {"full": 1e-4, "default": 3e-2}},
}


def _previous_seconds(previous: dict, name: str, seed: int):
    """Training time of a reused sweep run, as the JSON of the run that trained it recorded."""
    runs = previous.get("sweep_vop-f_val", {}).get(name, {}).get("runs", [])
    return next((r["train_seconds"] for r in runs if r["seed"] == seed), None)


def sweep(run: Path, out_root: Path, previous: dict, method: str = "vop-f", seeds=(0, 1)) -> dict:
    """Train ``method`` under each SWEEP variant and score val pair accuracy / temporal R@1."""
    from dataclasses import replace

    from vop.adapter import load_adapter
    from vop.backbone.loading import load_clip
    from vop.data.annotations import load_records
    from vop.data.cache import FrameCache
    from vop.data.synthetic import load_metadata
    from vop.demo import SETTINGS, _breakdown_of, train_config
    from vop.train.loop import train

    data_dir, cache_dir = run / "data", run / "cache"
    meta, clip = load_metadata(data_dir), load_clip("tiny-synthetic")
    val = load_records("csv", data_dir, split="val", videos_dir=data_dir)
    out = {}
    for name, changes in SWEEP.items():
        settings = replace(SETTINGS["full"], **changes)
        rows = []
        for seed in seeds:
            runs_dir = out_root / name.split(" (")[0].replace(" ", "_").replace("=", "") / f"seed{seed}"
            start = time.perf_counter()
            log = runs_dir / "run" / "train.log"
            reused = log.is_file() and "done:" in log.read_text()  # a finished run is only re-scored
            if not reused:
                train(train_config(settings, data_dir, cache_dir, method, seed, runs_dir), run_dir=runs_dir / "run",
                      show_progress=False)
            seconds = time.perf_counter() - start
            model = load_adapter(runs_dir / "run" / "adapter", clip)
            b = _breakdown_of(model, val, FrameCache(cache_dir), meta)
            rows.append({"seed": seed, "val_pair_accuracy": b["pair_accuracy"], "val_temporal_R@1": b["temporal"]["R@1"],
                         "train_seconds": _previous_seconds(previous, name, seed) if reused else seconds})
            print(name, rows[-1], flush=True)
        out[name] = {"runs": rows, "mean_val_pair_accuracy": sum(r["val_pair_accuracy"] for r in rows) / len(rows),
                     "mean_val_temporal_R@1": sum(r["val_temporal_R@1"] for r in rows) / len(rows)}
    return out


def selected_vs_final(run_dirs: list[Path], run: Path) -> dict:
    """Pair accuracy (val and the first 200 training clips) of the adapter validation selected
    (best t2v R@1) against the weights at the end of training (``checkpoints/last.pt``)."""
    from vop.adapter import load_adapter
    from vop.backbone.loading import load_clip
    from vop.data.annotations import load_records
    from vop.data.cache import FrameCache
    from vop.data.synthetic import load_metadata
    from vop.demo import TRAIN_CHECK_CLIPS, _breakdown_of

    data_dir, cache = run / "data", FrameCache(run / "cache")
    meta, clip = load_metadata(data_dir), load_clip("tiny-synthetic")
    splits = {"val": load_records("csv", data_dir, split="val", videos_dir=data_dir),
              "train": load_records("csv", data_dir, split="train", videos_dir=data_dir)[:TRAIN_CHECK_CLIPS]}
    out = {}
    for d in run_dirs:
        if not (d / "checkpoints" / "last.pt").is_file():
            continue
        model = load_adapter(d / "adapter", clip)
        ckpt = torch.load(d / "checkpoints" / "last.pt", weights_only=True, map_location="cpu")
        row = {"selected_step": int(ckpt["progress"]["best_step"]), "last_step": int(ckpt["progress"]["step"])}
        for which in ("selected", "final"):
            if which == "final":
                params = dict(model.trainable_named_parameters())
                with torch.no_grad():
                    for name, value in ckpt["trainable"].items():
                        params[name].copy_(value)
            for split, records in splits.items():
                row[f"{which}_{split}_pair_accuracy"] = _breakdown_of(model, records, cache, meta)["pair_accuracy"]
        out[str(d)] = row
        print(d, row, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("/tmp/dgroup"), help="a finished `vop demo --out` folder")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "demo_diagnose.json")
    ap.add_argument("--sweep", type=Path, default=None,
                    help="also train vop-f under the SWEEP variants (runs written here) and score validation")
    args = ap.parse_args()
    torch.set_num_threads(2)
    from vop.adapter import load_adapter
    from vop.backbone.loading import load_clip
    from vop.data.synthetic import load_metadata
    from vop.model import build_model

    start = time.perf_counter()
    data_dir, cache_dir = args.run / "data", args.run / "cache"
    meta = load_metadata(data_dir)
    clip = load_clip("tiny-synthetic")
    from vop.data.annotations import load_records

    val_ids = [Path(r.video_id).stem for r in load_records("csv", data_dir, split="val", videos_dir=data_dir)]
    triples = mirrored_caption_pairs(meta, val_ids)
    result = {"run": str(args.run), "caption_triples": len(triples), "examples": triples[:3], "methods": {}}
    models = {"zeroshot": build_model(clip, "zeroshot", frames=4)}
    for m in ("vop", "vop-f", "vop-fc"):
        models[m] = load_adapter(args.run / "runs" / f"{m}-seed0" / "adapter", clip)
    for name, model in models.items():
        model.eval()
        entry = {"text": text_side(model, triples)}
        records, videos = load_val(data_dir, cache_dir, model)
        entry["video"], v, v_rev = video_side(model, videos)
        entry["pair_halves_val"] = pair_halves(model, records, meta, v, v_rev)
        if name != "zeroshot":
            entry["one_step"] = gradient_step(model, data_dir, cache_dir)
        result["methods"][name] = entry
        print(name, json.dumps(entry, indent=None)[:1500])
    # the same gradient at the start of training (frame_pos = 0, prompts at init)
    fresh = build_model(clip, "vop-f", frames=4, seed=0)
    result["vop-f_at_init_one_step"] = gradient_step(fresh, data_dir, cache_dir)
    print("vop-f at init", result["vop-f_at_init_one_step"])
    if args.sweep is not None:
        previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
        result["sweep_vop-f_val"] = sweep(args.run, args.sweep, previous)
    dirs = sorted((args.run / "runs").glob("vop*-seed0"))
    if args.sweep is not None:
        dirs += sorted(args.sweep.glob("*/seed*/run"))
    result["selected_vs_final"] = selected_vs_final(dirs, args.run)
    result["seconds"] = time.perf_counter() - start
    result["machine"] = f"shared 2-core CPU ({platform.machine()}), torch {torch.__version__}, 2 threads"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
