"""``vop train CONFIG.yaml [--set key=value ...] [--resume] [--out DIR]``.

Under ``torchrun --nproc_per_node N`` the same command trains with DDP (the process group is
created here, never at import).
"""

from __future__ import annotations

import argparse

from vop.cli.messages import error, plain, warning


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="adapt a frozen CLIP with a method from a YAML recipe",
                              description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML recipe (see configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=1e-4 (repeatable)")
    p.add_argument("--out", default=None, help="run folder (default: run.out_dir/name from the config)")
    p.add_argument("--resume", action="store_true", help="continue the run in the folder from checkpoints/last.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    p.set_defaults(func=run)


def run(args) -> int:

    import torch

    from vop.train import distributed
    from vop.train.config import load_config
    from vop.train.loop import TrainingStopped, train
    from vop.train.setup import RecipeConflictError

    try:
        cfg = load_config(args.config, args.overrides)
    except (ValueError, TypeError, OSError) as exc:  # OSError: the recipe is a folder, unreadable, ...
        return error("train", exc)
    if cfg.run.threads > 0:
        torch.set_num_threads(cfg.run.threads)
    info = distributed.init_distributed(cfg.run.device)
    try:
        run_dir = train(cfg, run_dir=args.out, resume=args.resume, show_progress=not args.no_progress)
    except TrainingStopped as exc:
        if info.is_main:
            warning("train", f"{exc}; continue with --resume")
        return 3
    except RecipeConflictError as exc:  # a value the backbone owns, stated differently
        return error("train", f"{args.config}: {exc}")
    except (OSError, ValueError) as exc:  # OSError: --out under a file, unwritable, a full disk
        return error("train", exc)
    finally:
        distributed.shutdown()
    if info.is_main:
        print(f"run folder: {run_dir}")
    return 0
