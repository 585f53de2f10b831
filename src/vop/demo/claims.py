"""The claims the demo must show, each with its measurement and threshold.

Backbone claims (G) are measured on the frozen backbone and the world; method claims (C, K) on
the mean over the training seeds that were run (``benchmarks/demo_seeds.py`` runs 0, 1, 2). A
claim whose runs are missing (e.g. ``--methods`` left one out) is reported as not checked, and
``vop demo --check`` fails on it as on a claim that does not hold.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

TEMPORAL = ("vop-p", "vop-f", "vop-fc")  # the methods whose video prompts see frame order
ORDER_FREE = ("zeroshot", "full", "vop")  # mean pooling of per-frame embeddings: no order by construction
DEMO_BUDGET_S = 600
CONTROLS = ("vop-f-nopos",)  # runs that check where a signal comes from, not methods


@dataclass
class Claim:
    id: str
    claim: str
    measured: str
    threshold: str
    holds: bool | None  # None: not checked (a run it needs is missing)


# --------------------------------------------------------------------------- backbone (G1-G3)


def backbone_checks(clip, world: Path, meta: dict, cache_dir: Path, batch_size: int, batches: int = 40) -> dict:
    """G1-G3 numbers for the frozen backbone on this world (no training involved)."""
    import numpy as np
    import torch

    from vop import tokenize
    from vop.data.annotations import load_records
    from vop.data.cache import FrameCache
    from vop.demo.pretrain import DEFAULT_ASSETS, trim_tokens
    from vop.demo.run import IMAGE_SIZE
    from vop.eval.retrieval import encode_texts, encode_videos
    from vop.model import build_model
    from vop.train.loss import contrastive_loss

    record = json.loads((DEFAULT_ASSETS / f"{clip.cfg.name}.json").read_text())
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
    video, kept = encode_videos(model, records, IMAGE_SIZE, 256, cpu, cache=FrameCache(cache_dir), progress=False)
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


# --------------------------------------------------------------------------- all claims


def _rows(summary: dict) -> dict:
    return {r["method"]: r for r in summary["rows"]}


def check(summary: dict) -> list[Claim]:
    """Every claim of the demo, measured on ``summary`` (see ``run_demo``)."""
    b, rows = summary["backbone_checks"], _rows(summary)
    out = [
        Claim("G1", "backbone reads the captions", f"{len(b['unseen_tokens'])} of {b['caption_tokens']} caption "
              "token types unseen in pretraining", "0 unseen", not b["unseen_tokens"]),
        Claim("G2", "backbone is calibrated", f"zero-shot InfoNCE {b['zeroshot_infonce']:.2f} at the frozen scale "
              f"{b['logit_scale']:.1f}", f"< ln {b['infonce_batch']} = {math.log(b['infonce_batch']):.2f}",
              b["zeroshot_infonce"] < math.log(b["infonce_batch"])),
        Claim("G3", "text tower knows direction", f"twin cosine {b['twin_cosine']:.3f}; still direction accuracy "
              f"{b['still_direction_accuracy']:.1f}%", "cosine <= 0.6 and accuracy >= 90%",
              b["twin_cosine"] <= 0.6 and b["still_direction_accuracy"] >= 90),
    ]
    out += [_c1(rows, summary), _c2(rows), _c3(rows, summary), _k1(rows)]
    return out


def _missing(rows: dict, names) -> list[str]:
    return [n for n in names if n not in rows]


def _not_checked(cid: str, claim: str, threshold: str, missing: list[str]) -> Claim:
    return Claim(cid, claim, f"not run: {', '.join(missing)}", threshold, None)


def _seed_ratios(summary: dict) -> list[float]:
    """``vop``/``full`` order-free R@1 of each training seed that both ran (the claim is on the means)."""
    of = {(r["name"], r["seed"]): r["breakdown"]["order_free"]["R@1"]
          for r in summary.get("runs", []) if r.get("name") in ("vop", "full") and "breakdown" in r}
    return [of["vop", s] / of["full", s] for (name, s) in sorted(of) if name == "vop" and of.get(("full", s))]


def _c1(rows: dict, summary: dict) -> Claim:
    claim = "prompts adapt the frozen model"
    threshold = "order-free R@1: vop >= zeroshot + 10 and >= 0.85 x full; no trained method below zeroshot"
    missing = _missing(rows, ("zeroshot", "full", "vop"))
    if missing:
        return _not_checked("C1", claim, threshold, missing)
    of = {m: r["order_free_R@1"] for m, r in rows.items()}
    below = [m for m, r in rows.items() if r["trainable"] > 0 and m not in CONTROLS and of[m] < of["zeroshot"]]
    holds = of["vop"] >= of["zeroshot"] + 10 and of["vop"] >= 0.85 * of["full"] and not below
    ratios = _seed_ratios(summary)
    measured = (f"order-free R@1 zeroshot {of['zeroshot']:.1f}, vop {of['vop']:.1f} ({of['vop'] - of['zeroshot']:+.1f}), "
                f"full {of['full']:.1f} (vop/full {of['vop'] / max(of['full'], 1e-9):.2f}"
                + (f"; per training seed {min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ")")
                + (f"; below zeroshot: {', '.join(below)}" if below else ""))
    return Claim("C1", claim, measured, threshold, holds)


def _c2(rows: dict) -> Claim:
    claim = "video prompts model time"
    threshold = ("pair acc zeroshot/full/vop = 50.0; vop-p, vop-f, vop-fc >= 70, best >= 80; "
                 "best of vop-f/vop-fc t2v R@1 >= full")
    missing = _missing(rows, ORDER_FREE + TEMPORAL)
    if missing:
        return _not_checked("C2", claim, threshold, missing)
    pa = {m: rows[m]["pair_accuracy"] for m in ORDER_FREE + TEMPORAL}
    best_f = max(rows["vop-f"]["t2v_R@1"], rows["vop-fc"]["t2v_R@1"])
    holds = (all(abs(pa[m] - 50.0) < 1e-9 for m in ORDER_FREE) and all(pa[m] >= 70 for m in TEMPORAL)
             and max(pa[m] for m in TEMPORAL) >= 80 and best_f >= rows["full"]["t2v_R@1"])
    measured = ("pair acc " + ", ".join(f"{m} {pa[m]:.1f}" for m in ORDER_FREE + TEMPORAL)
                + f"; t2v R@1 best of vop-f/fc {best_f:.1f} vs full {rows['full']['t2v_R@1']:.1f}")
    return Claim("C2", claim, measured, threshold, holds)


def _c3(rows: dict, summary: dict) -> Claim:
    claim = "at a tiny cost"
    threshold = f"trainable % vop, vop-f <= 0.5, vop-fc <= 10; demo <= {DEMO_BUDGET_S // 60} min"
    missing = _missing(rows, ("vop", "vop-f", "vop-fc"))
    if missing:
        return _not_checked("C3", claim, threshold, missing)
    pct = {m: rows[m]["percent"] for m in ("vop", "vop-f", "vop-fc")}
    settings = summary["settings"]
    seeds, jobs = max(1, len(settings["seeds"])), max(1, settings.get("jobs", 1))
    # wall time of this call, plus the training time recorded by runs it reused (a re-run that reuses
    # every run takes seconds); runs trained `jobs` at a time shared the machine, so divide by jobs
    reused = sum(r.get("train_seconds", 0.0) for r in summary.get("runs", []) if r.get("reused"))
    minutes = (summary["total_seconds"] + reused / jobs) / seeds / 60
    holds = pct["vop"] <= 0.5 and pct["vop-f"] <= 0.5 and pct["vop-fc"] <= 10 and minutes * 60 <= DEMO_BUDGET_S
    measured = ", ".join(f"{m} {p:.2f}%" for m, p in pct.items()) + f"; {minutes:.1f} min per training seed"
    return Claim("C3", claim, measured, threshold, holds)


def _k1(rows: dict) -> Claim:
    claim = "control: no frame positions, no order"
    threshold = "vop-f with frame_pos frozen at zero: pair acc 50 +- 2"
    if "vop-f-nopos" not in rows:
        return _not_checked("K1", claim, threshold, ["vop-f-nopos"])
    pa = rows["vop-f-nopos"]["pair_accuracy"]
    return Claim("K1", claim, f"pair acc {pa:.1f}", threshold, abs(pa - 50) <= 2)


def all_hold(claims: list[dict]) -> bool:
    return all(c["holds"] is True for c in claims)


def format_claims(claims: list[dict]) -> str:
    lines = ["| id | claim | measured | threshold | holds |", "|---|---|---|---|---|"]
    for c in claims:
        mark = {True: "yes", False: "**no**", None: "not checked"}[c["holds"]]
        lines.append(f"| {c['id']} | {c['claim']} | {c['measured']} | {c['threshold']} | {mark} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the picture


def write_chart(summary: dict, path: Path) -> None:
    """One panel per method claim: C1 order-free R@1, C2/K1 pair accuracy, C3 trainable share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["rows"]
    names = [r["method"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = [("order_free_R@1", "C1  order-free t2v R@1 (%)", None, "zeroshot"),
              ("pair_accuracy", "C2 / K1  pair accuracy (%): own clip above its reverse", 50, None),
              ("percent", "C3  trainable parameters (% of the model, log)", None, None)]
    claims = {c["id"]: c for c in summary.get("claims", [])}
    for ax, (key, title, chance, ref) in zip(axes, panels):
        values = [r[key] for r in rows]
        errs = [r.get(key + "_std", 0.0) for r in rows]
        bars = ax.bar(names, values, yerr=errs if any(errs) else None, color="#4c72b0", capsize=3)
        for bar, v, e in zip(bars, values, errs):  # the value above its error bar, not under it
            ax.annotate(f"{v:.3g}" if key == "percent" else f"{v:.1f}", (bar.get_x() + bar.get_width() / 2, v + e),
                        xytext=(0, 1), textcoords="offset points", ha="center", va="bottom", fontsize=8)
        if chance is not None:
            ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label=f"chance ({chance})")
            ax.axhline(70, color="#dd8452", linestyle=":", linewidth=1, label="C2 threshold 70")
            ax.axhline(80, color="#55a868", linestyle="-.", linewidth=1, label="C2 best >= 80")
            ax.set_ylim(0, 120)
            ax.legend(loc="upper right", fontsize=7, ncol=3)
        if ref and ref in names:
            v = rows[names.index(ref)][key]
            ax.axhline(v, color="grey", linestyle="--", linewidth=1, label=f"{ref} ({v:.1f})")
            ax.axhline(v + 10, color="#dd8452", linestyle=":", linewidth=1, label=f"{ref} + 10 (C1)")
            if "full" in names:
                full = rows[names.index("full")][key]
                ax.axhline(0.85 * full, color="#55a868", linestyle="-.", linewidth=1, label="0.85 x full (C1)")
            ax.set_ylim(0, 1.3 * max(v + e for v, e in zip(values, errs)))  # room for the legend and labels
            ax.legend(loc="upper right", fontsize=7, ncol=3)
        if key == "percent":
            ax.set_yscale("log")
            ax.set_ylim(top=1e3)
            ax.axhline(0.5, color="#dd8452", linestyle=":", linewidth=1, label="0.5% (vop, vop-f)")
            ax.axhline(10, color="#55a868", linestyle="-.", linewidth=1, label="10% (vop-fc)")
            ax.legend(loc="upper right", fontsize=7, ncol=2)
        cid = title.split()[0]
        verdict = claims.get(cid, {}).get("holds")
        ax.set_title(title + ("" if verdict is None else f"  [{'holds' if verdict else 'fails'}]"), fontsize=9)
        ax.tick_params(axis="x", rotation=30, labelsize=8)
    seeds = summary["settings"]["seeds"]
    fig.suptitle(f"vop demo, world seed {summary['settings']['data_seed']}, training seeds {list(seeds)}"
                 + (" (mean ± std)" if len(seeds) > 1 else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
