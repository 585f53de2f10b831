"""What a demo method gets wrong: for each caption of a split, is the first-ranked clip the
caption's clip or its reverse (an order-free hit), and if not, which of the scene's attributes
does that clip get wrong (shape, colour, size, event kind, the event's colours or axis)?

    python benchmarks/demo/errors.py DEMO_OUT [--world 0] [--seed 0] [--split val] [--methods zeroshot vop full] [--json PATH]

DEMO_OUT is a `vop demo` or `benchmarks/demo/seeds.py` output folder (``world-<N>``,
``cache-<N>``, ``runs-<N>/<method>-seed<S>/adapter``). The default split is validation: use it
to look for what to change, and leave the test split to the final numbers. A miss whose clip
matches every attribute is a tie the caption cannot break (another clip fits it as well).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def attributes(scene: dict) -> dict:
    """What a caption says about a clip, order-free (left/right is one axis, red->blue one pair)."""
    actor, event = scene["actor"], scene["event"]
    if event["kind"] == "move":
        detail = "horizontal" if event["direction"] in ("left", "right") else "vertical"
    elif event["kind"] == "color":
        detail = "/".join(sorted((event["start"], event["end"])))
    else:
        detail = ""
    return {"shape": actor["shape"], "colour": actor.get("color"), "size": event.get("size"),
            "kind": event["kind"], "detail": detail}


def errors(model, world: Path, cache_dir: Path, meta: dict, split: str) -> dict:
    from vop.data.annotations import load_records
    from vop.data.cache import FrameCache
    from vop_demo.scoring import caption_scores, encode_clips

    records = load_records("csv", world, split=split, videos_dir=world)
    ids, video = encode_clips(model, records, FrameCache(cache_dir))
    sim, own, partner = caption_scores(model, meta, ids, video)
    first = sim.argmax(dim=1)
    wrong, hits, other_kind = Counter(), 0, 0
    for o, p, j in zip(own.tolist(), partner.tolist(), first.tolist()):
        if j in (o, p):
            hits += 1
            continue
        want, got = attributes(meta["by_id"][ids[o]]["scene"]), attributes(meta["by_id"][ids[j]]["scene"])
        differ = [k for k in want if want[k] != got[k]]
        wrong[" + ".join(differ) or "nothing (a tie)"] += 1
        other_kind += "kind" in differ
    return {"captions": len(first), "order_free_R@1": 100 * hits / len(first), "misses": len(first) - hits,
            "misses_of_another_event_kind": other_kind, "first_clip_wrong_in": dict(wrong.most_common())}


def main(argv=None) -> int:
    import torch

    from vop.adapter import load_adapter
    from vop.model import build_model
    from vop_demo.backbone import load_backbone
    from vop_demo.world.files import load_metadata

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="a vop demo output folder")
    parser.add_argument("--world", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="val", choices=["train", "val", "test"])
    parser.add_argument("--methods", nargs="+", default=["zeroshot", "vop", "full"])
    parser.add_argument("--json", type=Path, help="also write the counts here")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    world, cache_dir = args.out / f"world-{args.world}", args.out / f"cache-{args.world}"
    meta, clip = load_metadata(world), load_backbone()
    report = {}
    for name in args.methods:
        if name == "zeroshot":
            model = build_model(clip, "zeroshot", frames=meta["spec"]["frames"])
        else:
            model = load_adapter(args.out / f"runs-{args.world}" / f"{name}-seed{args.seed}" / "adapter", clip)
        report[name] = errors(model, world, cache_dir, meta, args.split)
        r = report[name]
        print(f"{name}: order-free R@1 {r['order_free_R@1']:.1f} on {r['captions']} {args.split} captions; "
              f"{r['misses']} misses, {r['misses_of_another_event_kind']} of them of another event kind")
        for what, n in list(r["first_clip_wrong_in"].items())[:6]:
            print(f"    {n:4d}  {what}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
