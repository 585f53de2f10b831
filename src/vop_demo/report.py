"""The demo's report: one row per run (mean and std over training seeds), the results table with
the tie rule of each column, and ``results.{json,md,png}``."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from vop_demo.settings import BACKBONE

METRICS = ("R@1", "R@5", "R@10", "MdR", "MnR")
TIE_NOTE = ("Tie rules: *expected* = a tie is broken at random, in expectation (a correct clip tied with n-1 "
            "others ranks ahead + (n+1)/2; R@K is the probability; `vop.eval.metrics.expected_metrics`); "
            "*pessimistic* = every tied wrong item ranks first (`vop eval`'s rule); pair acc gives a tie half "
            "credit (the expected rule for two items). Scores within 1e-6 count as tied (float rounding).")


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(runs: list[dict], methods) -> dict:
    """One row per run name of ``methods``: mean (and std over seeds) of every number."""
    rows = []
    for name in methods:
        mine = [r for r in runs if r["name"] == name]
        row = {"method": name, "seeds": [r["seed"] for r in mine], "trainable": mine[0]["budget"]["trainable"],
               "percent": mine[0]["budget"]["percent"], "adapter_bytes": mine[0]["adapter_bytes"]}
        values = {f"{d}_{m}": [r[d][m] for r in mine] for d in ("t2v", "v2t") for m in METRICS}
        values["pessimistic_t2v_R@1"] = [r["pessimistic"]["t2v"]["R@1"] for r in mine]
        values["pessimistic_v2t_R@1"] = [r["pessimistic"]["v2t"]["R@1"] for r in mine]
        values["order_free_R@1"] = [r["breakdown"]["order_free"]["R@1"] for r in mine]
        values["pair_accuracy"] = [r["breakdown"]["pair_accuracy"] for r in mine]
        values["train_pair_accuracy"] = [r["train_breakdown"]["pair_accuracy"] for r in mine]
        values["train_seconds"] = [r["train_seconds"] for r in mine]
        values["val_t2v_R@1"] = [r.get("val_t2v_R@1") or 0.0 for r in mine]
        values["val_score"] = [r.get("val_score") or 0.0 for r in mine]
        for key, vals in values.items():
            row[key], row[key + "_std"] = _mean_std(vals)
        rows.append(row)
    return {"rows": rows, "runs": runs}


def _fmt(row: dict, name: str, digits: int = 1) -> str:
    std = row.get(name + "_std", 0.0)
    return f"{row[name]:.{digits}f}" + (f" ± {std:.{digits}f}" if len(row["seeds"]) > 1 else "")


# (header, row key or None, tie rule)
COLUMNS = [("method", None, ""), ("trainable", None, ""), ("%", None, ""), ("adapter", None, "")] + \
    [(("t2v " if m == "R@1" else "") + m, f"t2v_{m}", "expected") for m in METRICS] + \
    [(("v2t " if m == "R@1" else "") + m, f"v2t_{m}", "expected") for m in METRICS] + \
    [("t2v R@1", "pessimistic_t2v_R@1", "pessimistic"), ("order-free R@1", "order_free_R@1", "expected"),
     ("pair acc", "pair_accuracy", "half credit"), ("train s", "train_seconds", "")]


def format_table(summary: dict) -> str:
    """Markdown table of the summary rows; its first row names each column's tie rule."""
    lines = ["| " + " | ".join(c[0] for c in COLUMNS) + " |", "|" + "---|" * len(COLUMNS),
             "| *ties* | " + " | ".join(c[2] for c in COLUMNS[1:]) + " |"]
    for r in summary["rows"]:
        cells = [r["method"], f"{r['trainable']:,}", f"{r['percent']:.3f}", f"{r['adapter_bytes'] / 1024:.1f} KB"]
        cells += [_fmt(r, key, 0 if key == "train_seconds" else 1) for _, key, _ in COLUMNS[4:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_note(threads: int, jobs: int = 1) -> str:
    import os
    import platform

    import torch

    from vop.cpu import cpu_model, simd_flags

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()}-core CPU ({platform.machine()}: {cpu_model()}; {simd_flags()}), torch "
            f"{torch.__version__}, {jobs} runs at once x "
            f"{threads} thread{'s' if threads > 1 else ''}; "
            f"load average {load} at the end")


def clock_note(clock: dict) -> str:
    """How long the demo took, and where the figure comes from."""
    if clock["seconds"] is None:
        return (f"wall clock not measured: {clock['reused']} runs reused from earlier calls that trained only some "
                f"of them (this call {clock['this_process_seconds']:.0f} s)")
    if clock["source"] == "recorded":
        return (f"wall clock {clock['seconds']:.0f} s, recorded by the `vop demo` that trained these runs "
                f"({clock['recorded_on']}; this call reused them in {clock['this_process_seconds']:.0f} s)")
    return f"wall clock {clock['seconds']:.0f} s"


def write_outputs(summary: dict, out_dir: Path, chart: bool = True) -> None:
    """``results.json``, ``results.md`` and (``chart``) ``results.png``."""
    from vop_demo import claims
    from vop_demo.chart import write_chart

    (out_dir / "results.json").write_text(json.dumps(summary, indent=1))
    s = summary["settings"]
    md = (f"# vop demo results\n\nbackbone `{BACKBONE}`, world seed {s['data_seed']}, {s['updates']} updates of "
          f"batch {s['batch_size']} (reverse pairs kept together), training seeds {list(s['seeds'])}, pairs "
          f"train/val/test {list(s['pairs'])}; {summary['machine']}; **{clock_note(summary['clock'])}**\n\n"
          + format_table(summary) + "\n\n" + TIE_NOTE + "\n\n## Claims\n\n"
          + claims.format_claims(summary["claims"]) + "\n")
    (out_dir / "results.md").write_text(md)
    if chart:
        write_chart(summary, out_dir / "results.png")
