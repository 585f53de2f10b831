"""``vop adapter inspect DIR``: what an adapter folder holds, without loading a backbone.
``vop adapter import modelscope MODEL_DIR --out DIR``: the authors' released ModelScope VoP
weights as a vop adapter (see ``vop.modelscope``)."""

from __future__ import annotations

import argparse

from vop.cli.messages import error, plain, shown


def register(subparsers) -> None:
    p = subparsers.add_parser("adapter", help="inspect saved adapters", description=plain(__doc__))
    sub = p.add_subparsers(dest="adapter_command", metavar="ACTION")
    q = sub.add_parser("inspect", help="print an adapter's metadata and tensors")
    q.add_argument("directory", help="adapter folder (adapter.json + adapter.safetensors)")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.set_defaults(func=run)
    m = sub.add_parser("import", help="convert released weights into a vop adapter",
                       description="Convert the VoP weights released on ModelScope (basic VoP: VoP_msrvtt9k.pth; "
                                   "series bias/partial/proj: VoPSE_msrvtt9k.pth) into a vop adapter folder.")
    m.add_argument("format", choices=["modelscope"], help="where the weights come from")
    m.add_argument("model_dir", help="ModelScope model folder (checkpoint + configuration.json), or the .pth")
    m.add_argument("--out", required=True, help="adapter folder to write")
    m.add_argument("--backbone", default=None,
                   help="CLIP weights the checkpoint was trained on (default: MODEL_DIR/ViT-B-32.pt)")
    m.add_argument("--method", default=None, choices=["proj", "bias", "partial", "partial+heads", "full"],
                   help="series checkpoints only: the vop baseline to map to (default: the folder's name "
                        "(..._vop_bias), else the smallest baseline that holds every tuned tensor)")
    m.add_argument("--force", action="store_true", help="overwrite an adapter already in --out")
    m.set_defaults(func=run_import)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(parser) -> int:
    parser.print_help()
    return 0


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from vop.adapter import WEIGHTS_FILE, AdapterError, backbone_ref, read_metadata, read_tensor_shapes

    d = Path(args.directory)
    try:
        meta = read_metadata(d)  # every field printed below is checked there (type and range)
        weights = d / WEIGHTS_FILE
        if not weights.is_file():
            raise AdapterError(f"{weights}: not found")
        shapes = {k: list(v) for k, v in read_tensor_shapes(weights).items()}
    except (AdapterError, OSError) as e:
        return error("adapter inspect", e)
    info = {**meta, "file_bytes": weights.stat().st_size, "tensors": shapes}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    p = meta.get("parameters") or {}
    print(f"adapter     {shown(d)}")  # every string read from the folder is shown escaped
    print(f"method      {shown(meta['method'])}" + ("  (adapter = the whole model)" if meta.get("whole_model") else ""))
    ref = backbone_ref(meta)
    print(shown(f"backbone    {ref.name}  sha256 {ref.weights_sha256}  ({ref.format or 'format not recorded'}: "
                f"{ref.source or 'no file recorded'})"))
    context = meta.get("context_length", "not recorded: the backbone's")
    print(f"frames      {meta['frames']}    text context {context}")
    counts = (f"trainable {p['trainable']:,} of {p['total']:,}  " if {"trainable", "total"} <= set(p)
              else "not recorded  ")
    print(shown("parameters  " + counts + "  ".join(f"{k} {v:,}" for k, v in p.get("breakdown", {}).items())))
    print(f"file        {weights.name} {info['file_bytes']:,} bytes, {len(info['tensors'])} tensors")
    print(shown(f"vop         {meta.get('vop_version', 'not recorded')} (schema {meta['schema_version']})"))
    for c in meta["method_config"]["components"]:
        print(shown("component   " + ", ".join(f"{k}={v}" for k, v in c.items())))
    if meta.get("extra"):
        print("extra       " + json.dumps(meta["extra"], sort_keys=True))
    for name, shape in info["tensors"].items():
        print(f"  {shown(name):<60} {shape}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from vop.modelscope import import_modelscope

    try:
        report = import_modelscope(args.model_dir, args.out, backbone=args.backbone, method=args.method,
                                   force=args.force)
    except (ValueError, OSError) as e:  # every refusal (ModelScope, backbone, TorchScript, limits) and I/O
        return error("adapter import", e)
    kind = "basic VoP" if report.kind == "vop" else "series baseline"
    print(shown(f"imported {report.checkpoint} ({kind}) as method {report.method!r} into {args.out}"))
    for src, dst in report.mapped.items() if len(report.mapped) <= 8 else ():
        print(shown(f"  {src} -> {dst}"))
    if len(report.mapped) > 8:
        print(f"  {len(report.mapped)} tensors mapped")
    print(f"  {report.checked} CLIP tensors in the checkpoint equal the backbone's")
    for key, why in report.unmapped.items():
        print(shown(f"  not mapped: {key} ({why})"))
    if report.kind == "vop":
        print("  text prompts use text_placement 'modelscope' (the port's layout)")
    return 0
