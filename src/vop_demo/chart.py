"""The demo's picture: one panel per method claim (C1 order-free R@1, C2/K1 pair accuracy, C3
trainable share), each with its threshold lines and verdict."""

from __future__ import annotations

from pathlib import Path


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
