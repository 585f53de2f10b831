"""The search example the demo prints: the best trained adapter on validation, and what ``vop
index`` / ``vop search`` with it find among all the world's videos for a caption only one clip fits."""

from __future__ import annotations

from pathlib import Path

from vop_demo.settings import BACKBONE

SEARCH_K = 5  # results shown by the search example


def search_example(summary: dict, clip, world: Path, meta: dict, cache_dir: Path) -> dict:
    """The trained adapter with the best *validation* score (``DemoSettings.select``), and what it
    finds among all the world's videos (what the printed ``vop index`` command indexes) for a test
    caption that only one clip fits: the first test clip whose scene (shape, colour, size, event
    and direction) no other clip of the world shares, worded by its first caption. A caption that
    several clips fit equally has no single right answer to show."""
    from collections import Counter

    import torch

    from vop.adapter import load_adapter
    from vop.data.cache import FrameCache
    from vop.eval.retrieval import encode_texts
    from vop_demo.cache import world_records
    from vop_demo.claims import CONTROLS
    from vop_demo.scoring import encode_clips
    from vop_demo.world.captions import VIDEO_TEMPLATES, caption

    trained = [r for r in summary["rows"] if r["trainable"] > 0 and r["method"] not in CONTROLS]
    if not trained:
        return {}
    best = max(trained, key=lambda r: r["val_score"])  # the score that selected each run's adapter
    run = next(r for r in summary["runs"] if r["name"] == best["method"])
    model = load_adapter(Path(run["run_dir"]) / "adapter", clip)
    ids, video_emb = encode_clips(model, world_records(world), FrameCache(cache_dir))
    scene = {cid: caption(meta["by_id"][cid]["scene"], VIDEO_TEMPLATES[0], None) for cid in ids}
    fits = Counter(scene.values())
    test = [cid for cid in ids if meta["by_id"][cid]["split"] == "test"]
    single = [cid for cid in test if fits[scene[cid]] == 1] or test[:1]  # test clips only one caption fits
    queries = [meta["by_id"][cid]["captions"][0] for cid in single]
    scores = encode_texts(model, queries, 128, torch.device("cpu"), progress=False) @ video_emb.t()  # [Q, V]
    order = scores.argsort(dim=1, descending=True)
    rank = {cid: i for i, cid in enumerate(ids)}
    ranks = [int((order[q] == rank[cid]).nonzero()) + 1 for q, cid in enumerate(single)]
    target, query, ranking = single[0], queries[0], [ids[i] for i in order[0].tolist()]
    partner = meta["by_id"][target]["partner"]
    index = Path(summary["world"]).parent / f"index-{best['method']}"
    return {"method": best["method"], "adapter": str(Path(run["run_dir"]) / "adapter"), "query": query,
            "target": target, "partner": partner, "top": ranking[:SEARCH_K],
            "target_rank": ranks[0], "partner_rank": ranking.index(partner) + 1,
            "single_queries": len(single), "found_in_top_k": sum(r <= SEARCH_K for r in ranks),
            "videos": len(ids),
            "commands": [(f"vop index {world / 'videos'} --backbone {BACKBONE} --adapter "
                         f"{Path(run['run_dir']) / 'adapter'} --cache {cache_dir} --out {index}"),
                         f'vop search {index} "{query}" -k {SEARCH_K}']}
