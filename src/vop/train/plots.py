"""PNG plots of a run from its ``metrics.jsonl``: training loss and validation R@1."""

from __future__ import annotations

import json
from pathlib import Path


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_plots(metrics_path: str | Path, out_dir: str | Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    train = [r for r in rows if r.get("kind") == "train"]
    val = [r for r in rows if r.get("kind") == "val"]
    out_dir = Path(out_dir)
    written = []
    specs = [
        ("loss.png", "training loss", [("loss", [r["step"] for r in train], [r["loss"] for r in train])]),
        ("val_r1.png", "validation R@1 (%)",
         [(d, [r["step"] for r in val], [r[d]["R@1"] for r in val]) for d in ("t2v", "v2t")]),
    ]
    for name, ylabel, series in specs:
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, xs, ys in series:
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, label=label)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=100)
        plt.close(fig)
        written.append(out_dir / name)
    return written
