"""``vop env``: versions, threads and devices, to paste into a bug report."""

from __future__ import annotations

import argparse

from vop.cli.messages import plain

# distribution names whose versions matter for bugs; optional ones show "not installed"
PACKAGES = (
    "vop",
    "torch",
    "numpy",
    "av",
    "safetensors",
    "ftfy",
    "regex",
    "faiss-cpu",
    "faiss-gpu",
    "openvino",
    "nncf",
    "fastapi",
    "uvicorn",
    "transformers",
    "opencv-python-headless",
    "tqdm",
    "pyyaml",
)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "env", help="print versions, threads and devices (for bug reports)", description=plain(__doc__)
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of aligned lines")
    p.set_defaults(func=run)


def package_versions() -> dict[str, str]:
    """Installed versions read from package metadata (no heavy import); absent ones say so."""
    from importlib import metadata

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    if versions["faiss-gpu"] == "not installed" and versions["faiss-cpu"] != "not installed":
        del versions["faiss-gpu"]
    return versions


def collect() -> dict:
    """Everything ``vop env`` reports, as one JSON-able dict."""
    import os
    import platform
    import sys

    import torch

    from vop.backbone.loading import bundled_models

    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None)
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": package_versions(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "env": {k: os.environ.get(k, "unset") for k in THREAD_VARS},
        "cuda_available": cuda,
        "cuda_version": torch.version.cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "mps_available": bool(mps and mps.is_available()),
        "bundled_models": sorted(bundled_models()),
    }


def format_report(info: dict) -> str:
    rows = [("python", info["python"]), ("platform", info["platform"])]
    rows += [(name, version) for name, version in info["packages"].items()]
    rows += [
        (
            "torch threads",
            (f"{info['torch_threads']} (interop {info['torch_interop_threads']}, {info['cpu_count']} CPUs)"),
        ),
        *[(k, v) for k, v in info["env"].items()],
        (
            "cuda",
            f"available, CUDA {info['cuda_version']}: {', '.join(info['gpus'])}"
            if info["cuda_available"]
            else "not available",
        ),
        ("mps", "available" if info["mps_available"] else "not available"),
        ("bundled models", ", ".join(info["bundled_models"]) or "none"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        import json

        print(json.dumps(info, indent=2))
    else:
        print(format_report(info))
    return 0
