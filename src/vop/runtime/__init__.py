"""Which runtime runs a model's inference on the CPU: PyTorch or OpenVINO, at a precision.

``--runtime {torch,openvino}`` and ``--precision {fp32,bf16,int8}`` of ``vop index``, ``search``,
``serve`` and ``eval`` all go through :func:`prepare`, the one place that turns an fp32 model
(adapter loaded) into what runs: the model itself (``torch`` ``fp32``), the model with the
fbgemm int8 backbone (``torch`` ``int8``, ``vop.backbone.quantize``), or an
:class:`~vop.runtime.openvino.OpenVINOModel`. Training stays PyTorch.

Vectors of every runtime and precision live in one embedding space (the quality checks in
``benchmarks/runtime_quality.py``), so the manifest records them but does not compare them.
"""

from __future__ import annotations

RUNTIMES = ("torch", "openvino")
PRECISIONS = {"torch": ("fp32", "int8"), "openvino": ("fp32", "bf16", "int8")}
ALL_PRECISIONS = ("fp32", "bf16", "int8")
# the defaults (docs/cpu-runtimes.md says why, from benchmarks/index_throughput.py): fp32 on PyTorch;
# bf16 and int8 without --runtime run on OpenVINO, which measured faster than torch's fbgemm int8
DEFAULT_RUNTIME = "torch"
DEFAULT_PRECISION = "fp32"


def default_runtime(precision: str) -> str:
    """The runtime ``--precision`` runs on when ``--runtime`` is not given."""
    return "openvino" if precision in ("bf16", "int8") else DEFAULT_RUNTIME


def check(runtime: str, precision: str, device: str = "cpu") -> None:
    """Raise a one-line ``PrecisionError`` when ``runtime`` cannot run ``precision`` here."""
    from vop.backbone.quantize import PrecisionError, check_precision

    if runtime not in RUNTIMES:
        raise PrecisionError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if runtime == "torch":
        if precision == "bf16":
            raise PrecisionError("--precision bf16 runs with --runtime openvino (on a CPU with native bf16)")
        check_precision(precision, device)
        return
    from vop.runtime.openvino import check_precision as check_openvino

    if str(device) not in ("cpu", "auto"):
        raise PrecisionError(f"--runtime openvino runs on the CPU, not on {device}")
    check_openvino(precision)


def prepare(model, runtime: str = DEFAULT_RUNTIME, precision: str = DEFAULT_PRECISION, calibration=None,
            cache_dir=None, threads: int | None = None):
    """``model`` (fp32, adapter loaded) made to run at ``runtime`` / ``precision``.

    torch int8 quantizes ``model``'s backbone in place (shared by every model on it); openvino
    returns a wrapper and leaves ``model`` alone. ``calibration``: int8 with openvino only.
    """
    check(runtime, precision)
    if runtime == "torch":
        from vop.backbone.quantize import apply_precision

        apply_precision(model, precision)
        return model
    from vop.runtime.openvino import OpenVINOModel

    return OpenVINOModel(model, precision, calibration, cache_dir, threads)


def runtime_of(model) -> str:
    return getattr(model, "runtime", "torch")


def precision_of(model) -> str:
    if runtime_of(model) == "openvino":
        return model.precision
    from vop.backbone.quantize import precision_of as torch_precision

    return torch_precision(model.clip)
