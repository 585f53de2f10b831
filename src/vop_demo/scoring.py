"""How a trained run is scored on a split of the world.

The standard protocol (``vop.eval.retrieval.evaluate``, what ``vop eval`` prints) breaks ties
pessimistically. An order-free method scores a clip and its exact reverse alike, so that rule
would count every one of its captions as a miss against the reversed partner; the demo's strict
numbers therefore use the expected-value rule (:func:`vop.eval.metrics.expected_metrics`: a tie
is broken at random, in expectation), and keep the pessimistic ones beside them. Two numbers the
standard protocol cannot show: **order-free R@1** (the reversed partner also counts as correct)
and **pair accuracy** (% of captions that score their own clip above its reversed partner; 50 is
chance and exactly what an order-free method gets).
"""

from __future__ import annotations

import json
from pathlib import Path

TIE_TOL = 1e-6  # cosine gaps this small are float rounding (the same frames summed in another order)
TRAIN_CHECK_CLIPS = 200  # training clips (whole reverse pairs) scored too: is order learned at all?


def pair_accuracy(s_own, s_partner, tol: float = TIE_TOL) -> float:
    """% of captions that score their own clip above the reversed partner; a gap within ``tol``
    is a tie (half credit: the expected-value rule for two items), so an order-free method scores
    exactly 50."""
    gap = s_own - s_partner
    return float(100 * ((gap > tol).float() + 0.5 * (gap.abs() <= tol).float()).mean())


def caption_scores(model, meta: dict, clip_ids: list[str], video_emb, batch_size: int = 128):
    """Cosine ``[Q, V]`` of every caption of ``clip_ids`` (in order) against the clips
    (``video_emb[i]`` belongs to ``clip_ids[i]``), with each caption's own and partner column."""
    import torch

    from vop.eval.retrieval import encode_texts

    index = {cid: i for i, cid in enumerate(clip_ids)}
    rows = [(text, index[cid], index[meta["by_id"][cid]["partner"]])
            for cid in clip_ids for text in meta["by_id"][cid]["captions"]]
    text_emb = encode_texts(model, [r[0] for r in rows], batch_size, torch.device("cpu"), progress=False)
    own, partner = torch.tensor([r[1] for r in rows]), torch.tensor([r[2] for r in rows])
    return text_emb @ video_emb.t(), own, partner


def temporal_breakdown(model, meta: dict, clip_ids: list[str], video_emb, batch_size: int = 128) -> dict:
    """Strict t2v and v2t metrics (expected-value ties), order-free R@1 (the partner also correct)
    and pair accuracy of every caption of ``clip_ids`` (``video_emb[i]`` belongs to ``clip_ids[i]``)."""
    from vop.eval.metrics import expected_metrics

    sim, own, partner = caption_scores(model, meta, clip_ids, video_emb, batch_size)  # [Q, V]
    own_l, partner_l = own.tolist(), partner.tolist()
    texts_of = [[] for _ in clip_ids]
    for q, o in enumerate(own_l):
        texts_of[o].append(q)
    s_own, s_partner = sim.gather(1, own[:, None])[:, 0], sim.gather(1, partner[:, None])[:, 0]
    return {"t2v": expected_metrics(sim, own_l, TIE_TOL),
            "v2t": expected_metrics(sim.t(), texts_of, TIE_TOL),
            "order_free": expected_metrics(sim, [[o, p] for o, p in zip(own_l, partner_l)], TIE_TOL),
            "pair_accuracy": pair_accuracy(s_own, s_partner)}


def encode_clips(model, records, cache) -> tuple[list[str], object]:
    """Clip ids and their embeddings ``[V, E]``; every generated clip must decode."""
    import torch

    from vop.eval.retrieval import encode_videos

    video_emb, kept = encode_videos(model, records, model.clip.cfg.vision.image_size, 128, torch.device("cpu"),
                                    cache=cache, progress=False)
    if len(kept) != len(records):
        raise RuntimeError(f"{len(records) - len(kept)} generated clips failed to decode")
    return [Path(records[i].video_id).stem for i in kept], video_emb


def breakdown_of(model, records, cache, meta: dict) -> dict:
    """:func:`temporal_breakdown` of ``records`` (clips of one split)."""
    return temporal_breakdown(model, meta, *encode_clips(model, records, cache))


def evaluate_run(run_dir: Path, clip, world: Path, cache, meta: dict, select: str) -> dict:
    """Test-split numbers of the adapter validation selected: strict t2v/v2t with expected-value
    ties, the standard protocol's pessimistic ones under ``pessimistic``, order-free R@1 and pair
    accuracy on the test clips and on the first training clips; the budget and the adapter's size."""
    from vop.adapter import WEIGHTS_FILE, load_adapter
    from vop.data.annotations import load_records
    from vop.eval.metrics import SELECT_SCORES
    from vop.eval.retrieval import evaluate

    model = load_adapter(run_dir / "adapter", clip)
    records = load_records("csv", world, split="test", videos_dir=world)
    standard = evaluate(model, records, image_size=clip.cfg.vision.image_size, batch_size=128, cache=cache,
                        device="cpu", progress=False)
    breakdown = breakdown_of(model, records, cache, meta)
    result = {"t2v": breakdown["t2v"], "v2t": breakdown["v2t"], "tie": "expected",
              "pessimistic": {"t2v": standard["t2v"], "v2t": standard["v2t"], "tie": standard.get("tie")},
              "breakdown": breakdown}
    train_records = load_records("csv", world, split="train", videos_dir=world)[:TRAIN_CHECK_CLIPS]
    result["train_breakdown"] = breakdown_of(model, train_records, cache, meta)
    result["budget"] = model.parameter_budget()
    result["adapter_bytes"] = (run_dir / "adapter" / WEIGHTS_FILE).stat().st_size
    selected = json.loads((run_dir / "adapter" / "adapter.json").read_text()).get("extra", {})
    result["selected_step"] = selected.get("step", 0)
    validation = selected.get("validation", {})
    result["val_t2v_R@1"] = validation.get("t2v", {}).get("R@1")
    result["val_score"] = SELECT_SCORES[select](validation) if validation else None
    return result
