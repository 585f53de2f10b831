"""`vop demo`: VoP's claims, checked on a miniature world on the bundled tiny CLIP (CPU, no downloads).

Generates (or reuses) a world under --out, trains every method with the project's training loop,
scores the test split, prints the results and the claims table (also saved as results.md,
results.json, results.png) and the commands that search the world's videos with the best
trained adapter. Finished runs are reused when the demo is run again with the same settings.
Every line names the run it belongs to ([vop] step 50/600 ...); progress bars appear only when
the output is a terminal.
"""

from __future__ import annotations

from vop.cli.args import seed_arg, threads_arg
from vop.cli.messages import error, plain


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="train and compare the methods on the bundled synthetic world",
                              description=plain(__doc__))
    p.add_argument("--methods", nargs="+", metavar="NAME",
                   help="runs to train (default: zeroshot full vop vop-p vop-f vop-fc vop-f-nopos; "
                        "any name of `vop methods` works)")
    p.add_argument("--seeds", nargs="+", type=seed_arg, metavar="N", help="training seeds (default: 0)")
    p.add_argument("--data-seed", type=seed_arg, metavar="N", help="world seed: another world from the same recipe "
                                                              "(default: 0)")
    p.add_argument("--out", default="demo_out", help="output folder (default: ./demo_out)")
    p.add_argument("--quick", action="store_true",
                   help="a handful of clips and updates: checks the pipeline in seconds, numbers meaningless")
    p.add_argument("--check", action="store_true", help="exit 1 unless every claim holds")
    p.add_argument("--jobs", type=threads_arg, help="runs trained at once, each in its own process (default: 2)")
    p.add_argument("--threads", type=threads_arg, help="torch CPU threads per run (default: 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (there are none when the output is not "
                                                        "a terminal)")
    p.set_defaults(func=run)


def run(args) -> int:
    import time
    from pathlib import Path

    entered = time.time()
    # the demo is its own package beside the library; `vop` imports it here only
    from vop_demo import claims
    from vop_demo.clock import demo_started_at
    from vop_demo.console import bars_wanted
    from vop_demo.pipeline import run_demo
    from vop_demo.report import TIE_NOTE, clock_note, format_table
    from vop_demo.settings import SETTINGS, run_spec, with_overrides

    settings = with_overrides(SETTINGS["quick" if args.quick else "full"], args.methods, args.seeds, args.threads,
                              args.data_seed, args.jobs)
    try:
        for name in settings.methods:
            run_spec(name)
    except KeyError as err:
        return error("demo", err.args[0])
    out = Path(args.out)
    summary = run_demo(settings, out, progress=bars_wanted(args.quiet), started=demo_started_at(entered))
    print()
    print(format_table(summary))
    print(f"\norder-free R@1: the reversed partner also counts as correct; pair acc: % of captions scoring their "
          f"own clip above its time-reversed partner (chance 50). {TIE_NOTE}")
    note = clock_note(summary["clock"])
    print(f"\n{note[0].upper()}{note[1:]}.")
    print("\n" + claims.format_claims(summary["claims"]))
    print(f"\nsaved {out / 'results.md'}, {out / 'results.json'}, {out / 'results.png'}")
    example = summary.get("search_example")
    if example:
        print(f"\nbest trained adapter on validation: {example['method']}. Search the world's videos with it:")
        for cmd in example["commands"]:
            print("  " + cmd)
        print(f"  -> top {len(example['top'])}: {', '.join(example['top'])} (the captioned clip {example['target']}: "
              f"rank {example['target_rank']}; its time-reversed partner {example['partner']}: rank "
              f"{example['partner_rank']})")
        print(f"  over the {example['single_queries']} test captions that only one of the {example['videos']} "
              f"videos fits, that video is in the top {len(example['top'])} for {example['found_in_top_k']}")
    holds = claims.all_hold(summary["claims"])
    if args.check and not holds:
        failed = [c["id"] for c in summary["claims"] if c["holds"] is not True]
        error("demo", f"claims not holding or not checked: {', '.join(failed)}")
        return 1
    return 0
