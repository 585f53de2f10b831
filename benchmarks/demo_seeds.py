"""`vop demo` over several training seeds: mean ± std of every method, side by side in one run.

    python benchmarks/demo_seeds.py [--seeds 0 1 2] [--methods ...] [--out .cache/demo-seeds] [--random-batches]

Same dataset (data seed 0), same settings as `vop demo`; only the training seed changes (method
init, batch order, frame sampling). Prints the table, each method's t2v R@1 and trainable
parameters as ratios to `full`, and writes benchmarks/results/demo_seeds.json. Runs already
finished in --out are reused (same settings hash), so an interrupted benchmark can be resumed.
``--random-batches`` turns the demo's ``group_batches`` off (the comparison: reverse partners
rarely share a batch) and writes benchmarks/results/demo_seeds_random_batches.json instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "demo_seeds.json"


def main(argv=None) -> int:
    from vop.demo import SETTINGS, format_table, run_demo, with_overrides

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+")
    parser.add_argument("--out", default=".cache/demo-seeds", help="working folder (dataset, cache, runs)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--random-batches", action="store_true", help="group_batches off: the comparison")
    args = parser.parse_args(argv)

    settings = with_overrides(SETTINGS["full"], args.methods, args.seeds, args.threads)
    if args.random_batches:
        settings = replace(settings, group_batches=False)
    results = RESULTS.with_name("demo_seeds_random_batches.json") if args.random_batches else RESULTS
    summary = run_demo(settings, Path(args.out), progress=False)
    print(format_table(summary))
    rows = {r["method"]: r for r in summary["rows"]}
    ratios = {}
    if "full" in rows:
        full = rows["full"]
        print("\nratios to full: t2v R@1, pair accuracy, trainable params")
        for m, r in rows.items():
            ratios[m] = {"t2v_R@1": r["t2v_R@1"] / max(full["t2v_R@1"], 1e-9),
                         "pair_accuracy": r["pair_accuracy"] / max(full["pair_accuracy"], 1e-9),
                         "trainable": r["trainable"] / full["trainable"]}
            print(f"  {m:<9} {ratios[m]['t2v_R@1']:.2f}x  {ratios[m]['pair_accuracy']:.2f}x  "
                  f"{ratios[m]['trainable']:.5f}x")
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({
        "what": "vop demo (synthetic temporal benchmark, bundled tiny-synthetic CLIP), mean/std over training seeds",
        "command": " ".join(["python", "benchmarks/demo_seeds.py", *(sys.argv[1:] if argv is None else argv)]),
        "machine": summary["machine"],
        "settings": summary["settings"],
        "total_seconds": summary["total_seconds"],
        "rows": summary["rows"],
        "ratios_to_full": ratios,
    }, indent=1) + "\n")
    print(f"\nwrote {results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
