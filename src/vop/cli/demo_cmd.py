"""``vop demo``: train and compare methods on the bundled synthetic temporal benchmark (CPU, no downloads).

Generates (or reuses) the dataset under ``--out``, loads the bundled ``tiny-synthetic`` CLIP,
trains each method with the project's training loop, scores the test split and prints the
table (also saved as results.md / results.json / results.png), then the ``vop index`` /
``vop search`` commands that search the demo's videos with the best adapter.
Finished runs are reused when the demo is run again with the same settings.
"""

from __future__ import annotations

from vop.cli.messages import error, plain


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the synthetic temporal benchmark on the bundled tiny CLIP",
                              description=plain(__doc__))
    p.add_argument("--methods", nargs="+", metavar="NAME",
                   help="methods to train (default: zeroshot full vop vop-p vop-f vop-fc; see `vop methods`)")
    p.add_argument("--seeds", nargs="+", type=int, metavar="N", help="training seeds (default: 0)")
    p.add_argument("--out", default="demo_out", help="output folder (default: ./demo_out)")
    p.add_argument("--quick", action="store_true",
                   help="a tiny dataset and one epoch: checks the pipeline in seconds, numbers meaningless")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from vop.demo import SETTINGS, format_table, run_demo, search_commands, with_overrides
    from vop.model import list_methods

    settings = with_overrides(SETTINGS["quick" if args.quick else "full"], args.methods, args.seeds, args.threads)
    unknown = [m for m in settings.methods if m not in list_methods()]
    if unknown:
        return error("demo", f"unknown method(s) {', '.join(unknown)}; known: {', '.join(list_methods())}")
    out = Path(args.out)
    summary = run_demo(settings, out, progress=not args.quiet)
    print()
    print(format_table(summary))
    print(f"\ntotal {summary['total_seconds']:.0f} s; pair acc = % of temporal captions scoring their own clip "
          "above its time-reversed partner (chance 50)")
    print("pair acc on training clips (is order learned at all?): "
          + ", ".join(f"{r['method']} {r['train_pair_accuracy']:.1f}" for r in summary["rows"]))
    print(f"saved {out / 'results.md'}, {out / 'results.json'}, {out / 'results.png'}")
    print("\nsearch the demo's videos with its best adapter:")
    for cmd in search_commands(summary, out):
        print("  " + cmd)
    return 0
