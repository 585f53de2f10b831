"""`vop demo` over training seeds 0 1 2: mean ± std of every run and the claims on the means.

    python benchmarks/demo/seeds.py [--seeds 0 1 2] [--data-seed 0] [--out .cache/demo-seeds] [--check]

The same world and settings as `vop demo` (the claims' thresholds are stated for the mean over
training seeds 0 1 2); only the training seed changes (prompt init, batch order). Prints the
table and the claims table and writes benchmarks/results/demo_seeds[_world<N>].json. Runs already
finished in --out are reused (same settings hash), so an interrupted benchmark resumes.
``--check`` exits 1 unless every claim holds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"


def main(argv=None) -> int:
    import time

    entered = time.time()
    from vop_demo import claims
    from vop_demo.clock import demo_started_at
    from vop_demo.pipeline import run_demo
    from vop_demo.report import clock_note, format_table
    from vop_demo.settings import SETTINGS, with_overrides

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+")
    parser.add_argument("--out", default=".cache/demo-seeds", help="working folder (world, cache, runs)")
    parser.add_argument("--jobs", type=int, help="runs trained at once (default: vop demo's, 2)")
    parser.add_argument("--threads", type=int, help="torch threads per run (default: vop demo's, 1)")
    parser.add_argument("--check", action="store_true", help="exit 1 unless every claim holds")
    args = parser.parse_args(argv)

    settings = with_overrides(SETTINGS["full"], args.methods, args.seeds, args.threads, args.data_seed,
                              args.jobs)
    summary = run_demo(settings, Path(args.out), progress=False, started=demo_started_at(entered))
    print(format_table(summary))
    print("\n" + claims.format_claims(summary["claims"]))
    name = "demo_seeds.json" if args.data_seed == 0 else f"demo_seeds_world{args.data_seed}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / name).write_text(json.dumps({
        "what": "vop demo (bundled tiny-synthetic CLIP), mean/std over training seeds; claims on the means",
        "command": " ".join(["python", "benchmarks/demo/seeds.py", *(sys.argv[1:] if argv is None else argv)]),
        "machine": summary["machine"],
        "settings": summary["settings"],
        "clock": summary["clock"],
        "backbone_checks": summary["backbone_checks"],
        "claims": summary["claims"],
        "rows": summary["rows"],
    }, indent=1) + "\n")
    print(f"\nwrote {RESULTS / name} ({clock_note(summary['clock'])})")
    return 1 if args.check and not claims.all_hold(summary["claims"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
