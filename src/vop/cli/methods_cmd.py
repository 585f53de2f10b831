"""``vop methods``: every method's trainable parameters, share of the backbone and adapter size.

The backbone is built with random weights from the config named by ``--config`` (nothing is
downloaded); the adapter size is measured by actually saving each adapter to a temporary folder.
``--backbone NAME`` is the old spelling of ``--config`` (deprecated: everywhere else
``--backbone`` names weights, not a config).
"""

from __future__ import annotations

import argparse

from vop.cli.args import frames_arg
from vop.cli.messages import error, plain, warning

DEFAULT_CONFIG = "ViT-B-32"


def register(subparsers) -> None:
    p = subparsers.add_parser("methods", help="list methods with trainable parameters and adapter size",
                              description=plain(__doc__))
    p.add_argument("--config", default=None, metavar="NAME",
                   help=f"CLIP config name, e.g. ViT-B-16, tiny (default: {DEFAULT_CONFIG})")
    p.add_argument("--backbone", dest="config_deprecated", default=None, help=argparse.SUPPRESS)
    p.add_argument("--frames", type=frames_arg, default=12, help="frames per video F (default: 12)")
    p.add_argument("--method", action="append", dest="methods", metavar="NAME",
                   help="only this method (repeatable); default: all")
    p.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    p.set_defaults(func=run)


def method_row(clip, method: str, frames: int, backbone_params: int) -> dict:
    """Budget of one method on ``clip``, with the adapter size measured on disk."""
    import tempfile
    from pathlib import Path

    from vop.adapter import WEIGHTS_FILE, save_adapter
    from vop.model import build_model

    model = build_model(clip, method, frames=frames, seed=0)
    budget, parts = model.parameter_budget(), model.parameter_breakdown()
    with tempfile.TemporaryDirectory() as tmp:
        save_adapter(model, tmp)
        size = (Path(tmp) / WEIGHTS_FILE).stat().st_size
    return {
        "method": method,
        "trainable": budget["trainable"],
        "frame_pos": parts.get("frame_pos", 0),
        "percent_of_backbone": 100.0 * budget["trainable"] / backbone_params,
        "adapter_bytes": size,
        "whole_model": method == "full",
        "components": model.method_config["components"],
    }


def _size(n: int) -> str:
    """Decimal units, as file managers show them."""
    if n < 1000:
        return f"{n} B"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def _note(r: dict) -> str:
    if r["whole_model"]:
        return "adapter = the whole model"
    if r["frame_pos"]:
        return f"incl. frame positional embedding {r['frame_pos']:,}"
    return ""


def print_table(rows: list[dict], backbone: str, frames: int, backbone_params: int) -> None:
    print(f"backbone {backbone} ({backbone_params:,} parameters), F = {frames}")
    print(f"{'method':<14} {'trainable':>12} {'% backbone':>11} {'adapter':>10}  note")
    for r in rows:
        print(f"{r['method']:<14} {r['trainable']:>12,} {r['percent_of_backbone']:>10.4f}% "
              f"{_size(r['adapter_bytes']):>10}  {_note(r)}")


def _config_name(args: argparse.Namespace) -> str:
    """``--config``, or the deprecated ``--backbone`` with a warning; ViT-B-32 when neither."""
    if args.config_deprecated is not None:
        if args.config is not None and args.config != args.config_deprecated:
            warning("methods", f"--backbone {args.config_deprecated} ignored: --config {args.config} is given")
        else:
            warning("methods", "--backbone is deprecated here (it names a config, not weights): "
                    f"use --config {args.config_deprecated}")
    return args.config or args.config_deprecated or DEFAULT_CONFIG


def run(args: argparse.Namespace) -> int:
    import json

    import torch
    from tqdm import tqdm

    from vop.backbone.clip import build_clip, get_config
    from vop.model import list_methods

    name = _config_name(args)
    try:
        cfg = get_config(name)
    except KeyError as e:
        return error("methods", e.args[0])
    methods = args.methods or list_methods()
    unknown = [m for m in methods if m not in list_methods()]
    if unknown:
        return error("methods", f"unknown method(s) {', '.join(unknown)}; known: {', '.join(list_methods())}")
    with torch.no_grad():
        clip = build_clip(cfg, seed=0)
        backbone_params = sum(p.numel() for p in clip.parameters())
        rows = [method_row(clip, m, args.frames, backbone_params)
                for m in tqdm(methods, desc="methods", disable=args.json or len(methods) < 3, leave=False)]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows, cfg.name, args.frames, backbone_params)
    return 0
