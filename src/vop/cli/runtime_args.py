"""``--runtime`` / ``--precision`` / ``--calibration-videos``, shared by index, search, serve and eval
(cheap to import: the choices are data; ``vop.runtime`` is imported by the commands' ``run``)."""

from __future__ import annotations

from vop.cli.args import bounded_int

RUNTIMES = ("torch", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")


def add_runtime_args(p, calibration: str | None = None) -> None:
    """Add the runtime options to parser ``p``; ``calibration`` says what int8 calibrates on
    (None: the command takes no calibration option)."""
    p.add_argument("--runtime", choices=RUNTIMES,
                   help="CPU inference runtime (default: torch for fp32, openvino for bf16 and int8; openvino: "
                        "the exported graph, cached on disk; docs/cpu-runtimes.md)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="fp32 (default), bf16 (CPUs with native bf16) or int8 (openvino: NNCF-calibrated "
                        "graph; --runtime torch: the older fbgemm linear layers); vectors of any runtime and "
                        "precision search together")
    if calibration is not None:
        p.add_argument("--calibration-videos", type=bounded_int(1, 10_000), default=None, metavar="N",
                       help=f"openvino int8: calibrate on {calibration} (default 8)")


def runtime_choice(args) -> tuple[str, str]:
    """``(runtime, precision)`` the user asked for, with the defaults filled in."""
    from vop.runtime import DEFAULT_PRECISION, default_runtime

    precision = args.precision or DEFAULT_PRECISION
    return args.runtime or default_runtime(precision), precision
