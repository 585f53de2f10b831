"""How far apart does an order-free model put a demo clip and its time-reversed partner?

``zeroshot`` mean-pools per-frame embeddings, so it cannot see order. In ``vop demo`` a clip and
its partner are two H.264 files whose middle frames are the same picture, but each file is
compressed on its own, so the decoded frames differ slightly. This measures, on the test split
of a finished demo run, with the frames the evaluation uses (the run's frame cache):

* cos(clip, partner) and the |score gap| ``t . v_clip - t . v_partner`` of every temporal
  caption: what decides ``zeroshot``'s pair accuracy in the demo table;
* the same with the clip's own decoded frames in reverse order instead of the partner file
  (only float rounding can separate those).

Usage: ``python benchmarks/demo_partner_gap.py --run /tmp/dgroup`` (a finished ``vop demo --out``
folder) -> ``benchmarks/results/demo_partner_gap.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def _stats(x: torch.Tensor) -> dict:
    q = torch.quantile(x.double(), torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.double))
    return dict(zip(("min", "p10", "median", "p90", "max"), (float(v) for v in q)))


def main() -> None:
    from vop import load_clip
    from vop.data.annotations import load_records
    from vop.data.cache import FrameCache
    from vop.data.dataset import VideoDataset
    from vop.data.synthetic import load_metadata
    from vop.demo import BACKBONE, IMAGE_SIZE, SETTINGS, pair_accuracy
    from vop.eval.retrieval import encode_texts, encode_videos
    from vop.model import build_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=Path("/tmp/dgroup"), help="a finished `vop demo --out` folder")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "demo_partner_gap.json")
    args = ap.parse_args()

    frames = SETTINGS["full"].frames
    model = build_model(load_clip(BACKBONE), "zeroshot", frames=frames)
    data = args.run / "data"
    records = load_records("csv", data, split="test", videos_dir=data)
    cache = FrameCache(args.run / "cache")
    cpu = torch.device("cpu")
    emb, kept = encode_videos(model, records, IMAGE_SIZE, 64, cpu, cache=cache, progress=False)
    ids = [Path(records[i].video_id).stem for i in kept]
    at = {cid: i for i, cid in enumerate(ids)}
    by_id = load_metadata(data)["by_id"]
    partner = torch.tensor([at[by_id[cid]["partner"]] for cid in ids])

    # the clip's own decoded frames, reversed: an order-free model gives the same vector up to rounding
    dataset = VideoDataset(records, frames=frames, image_size=IMAGE_SIZE, cache=cache, on_error="raise")
    with torch.no_grad():
        emb_flipped = torch.cat([model.encode_video(dataset[i]["video"].flip(0)[None]) for i in kept])

    texts, own = [], []
    for cid in ids:
        for cap in by_id[cid]["captions"]:
            if cap["kind"] == "temporal":
                texts.append(cap["text"])
                own.append(at[cid])
    own = torch.tensor(own)
    t = encode_texts(model, texts, 64, cpu, progress=False)
    s_own = (t * emb[own]).sum(-1)
    s_partner = (t * emb[partner[own]]).sum(-1)
    s_flipped = (t * emb_flipped[own]).sum(-1)
    result = {
        "benchmark": "demo_partner_gap",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "run": str(args.run),
        "method": "zeroshot",
        "test_clips": len(ids),
        "temporal_queries": len(texts),
        "partner_file": {
            "cos_clip_vs_partner": _stats((emb * emb[partner]).sum(-1)),
            "abs_score_gap": _stats((s_own - s_partner).abs()),
            "pair_accuracy": pair_accuracy(s_own, s_partner),
        },
        "own_frames_reversed": {
            "cos_clip_vs_reversed": _stats((emb * emb_flipped).sum(-1)),
            "abs_score_gap": _stats((s_own - s_flipped).abs()),
            "pair_accuracy": pair_accuracy(s_own, s_flipped),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("partner_file", "own_frames_reversed")}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
