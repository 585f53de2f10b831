"""Run a ``vop.model`` model's ``encode_video`` / ``encode_text`` through OpenVINO on the CPU.

:class:`OpenVINOModel` wraps an fp32 PyTorch model and offers the same interface (``frames``,
``context_length``, ``method``, ``encode_video``, ``encode_text`` ...), so the index, search,
serve and eval code does not know which runtime runs. Each graph (video, text) is exported
(``vop.runtime.export``), converted (``openvino.convert_model`` of the exported program), for
int8 quantized by NNCF on the user's own frames (``vop.runtime.calibration``), written to the
cache (``vop.runtime.cache``) and compiled; all of it lazily, on the graph's first use, so
``vop search`` never builds the video graph.

Precisions: ``fp32`` (the plugin is told ``INFERENCE_PRECISION_HINT=f32``: on a CPU with native
bf16 it would otherwise pick bf16), ``bf16`` (only where OpenVINO reports native BF16 support;
elsewhere :class:`~vop.backbone.quantize.PrecisionError`), ``int8`` (the video graph: NNCF
post-training quantization, transformer preset with SmoothQuant, calibrated on the user's
frames; the text graph gets NNCF's data-free int8 *weight* compression (activations stay fp32),
since no text of the user's is at hand to calibrate activations on: ``int8-weights``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from vop.backbone.quantize import PrecisionError
from vop.runtime import export
from vop.runtime.cache import cache_root, graph_key, key_dir

PRECISIONS = ("fp32", "bf16", "int8")
# How the video graph is quantized to int8 (see quantize); benchmarks/runtime_quality.py
# --probe int8-settings compares alternatives. Keys: smooth_quant (SmoothQuant alpha of the matrix
# products, None = off), keep_fp32 (parts left in fp32: "patch" = the patch embedding's
# convolution, "head" = the last matrix product, the output projection, "mlp_out" = each MLP's
# second matrix product), preset (None = the model
# type's own, "mixed", "performance"), fast_bias_correction, model_type ("transformer" or None),
# only_layer (None, or e.g. "block 3": quantize that layer of the image tower alone, everything
# else fp32; a probe of which layer int8 hurts most).
INT8_SETTINGS = {"smooth_quant": None, "keep_fp32": ("patch", "head"), "preset": None,
                 "fast_bias_correction": True, "model_type": "transformer", "only_layer": None}
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # the CPU's int8 dot-product instructions
_CORE = None
_WARNED_NO_VNNI = False
log = logging.getLogger("vop.runtime")


def core():
    """One ``openvino.Core`` per process."""
    global _CORE
    if _CORE is None:
        import openvino

        _CORE = openvino.Core()
    return _CORE


def cpu_capabilities() -> list[str]:
    """What OpenVINO says this CPU computes natively (e.g. ``FP32``, ``BF16``, ``INT8``)."""
    return [str(c) for c in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


def cpu_int8_flags() -> set[str] | None:
    """Which of :data:`INT8_FLAGS` this CPU has; None where its flags cannot be read."""
    from vop.cpu import cpu_flags

    flags = cpu_flags()
    return None if flags is None else flags & set(INT8_FLAGS)


def check_precision(precision: str) -> str:
    """``precision`` if OpenVINO can run it on this CPU; a one-line :class:`PrecisionError` otherwise.
    int8 on a CPU without VNNI runs, with one warning: it measured no faster than torch fp32 there."""
    global _WARNED_NO_VNNI
    if precision not in PRECISIONS:
        raise PrecisionError(f"unknown precision {precision!r} for --runtime openvino; choose one of "
                             f"{', '.join(PRECISIONS)}")
    if precision == "bf16" and "BF16" not in cpu_capabilities():
        raise PrecisionError("--precision bf16 needs a CPU with native bf16 (AVX-512 BF16 or AMX), which this "
                             "one lacks; use --precision int8 (or fp32)")
    if precision == "int8" and cpu_int8_flags() == set() and not _WARNED_NO_VNNI:
        _WARNED_NO_VNNI = True
        log.warning("this CPU has no VNNI (avx512_vnni, avx_vnni or amx_int8): OpenVINO int8 measured no faster "
                    "than torch fp32 without it; --runtime openvino --precision fp32 or --runtime torch "
                    "--precision int8 may be faster here (docs/cpu-runtimes.md)")
    return precision


class OpenVINOModel:
    """``model`` (fp32 PyTorch, adapter loaded) run by OpenVINO at ``precision``.

    ``calibration`` (:class:`~vop.runtime.calibration.Calibration`) is required for int8 videos;
    ``cache_dir`` overrides the cache folder; ``threads`` (default: torch's thread count) is the
    plugin's ``INFERENCE_NUM_THREADS``. ``timings[graph]`` records how each graph was obtained
    (``cached`` and seconds), for the benchmark and the start-up line.
    """

    runtime = "openvino"

    def __init__(self, model, precision: str = "fp32", calibration=None, cache_dir: str | Path | None = None,
                 threads: int | None = None, int8_settings: dict | None = None):
        check_precision(precision)
        self.int8_settings = dict(INT8_SETTINGS, **(int8_settings or {}))
        self.source = model.eval()
        self.precision = precision
        self.calibration = calibration
        self.cache_root = cache_root(cache_dir)
        self.threads = threads
        self.timings: dict[str, dict] = {}
        self._compiled: dict[str, object] = {}
        self._lock = threading.Lock()

    def __getstate__(self):  # picklable (a Ray actor gets a copy): compiled graphs are rebuilt (from the cache)
        state = dict(self.__dict__)
        state.update(_compiled={}, _lock=None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __getattr__(self, name):  # method, frames, context_length, clip, method_config ... of the source
        if name.startswith("_") or name == "source":
            raise AttributeError(name)
        return getattr(self.source, name)

    # ----- the vop.model interface
    def eval(self):
        return self

    def to(self, device):
        if torch.device(device).type != "cpu":
            raise PrecisionError(f"--runtime openvino runs on the CPU, not on {device}")
        return self

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, F, 3, S, S]`` -> ``[B, E]`` unit vectors."""
        if video.shape[0] == 0:
            return video.new_zeros(0, self.source.clip.cfg.embed_dim)
        return self._run("video", video.detach().float().cpu().contiguous())

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` token ids -> ``[B, E]`` unit vectors."""
        if tokens.shape[0] == 0:
            return torch.zeros(0, self.source.clip.cfg.embed_dim)
        return self._run("text", export.text_input(self.source, tokens.cpu()).contiguous())

    def similarity(self, text, video):
        return text @ video.t()

    def logit_scale(self):
        return self.source.logit_scale()

    # ----- graphs
    def graph_precision(self, graph: str) -> str:
        """The precision ``graph`` runs at: int8 (calibrated) for the video graph, int8 weights for the text graph."""
        return "int8-weights" if self.precision == "int8" and graph == "text" else self.precision

    def prepare(self, *graphs: str) -> dict:
        """Build (or load from the cache) and compile ``graphs`` now; returns ``timings``."""
        for g in graphs or ("video", "text"):
            self._graph(g)
        return self.timings

    def _run(self, graph: str, x: torch.Tensor) -> torch.Tensor:
        with self._lock:  # one infer request per graph; a server's threads take turns
            self._graph(graph)
            request = self._compiled[graph + ":request"]
            out = request.infer({0: x.numpy()})
            return torch.from_numpy(next(iter(out.values())).copy())

    def _graph(self, graph: str):
        if graph in self._compiled:
            return self._compiled[graph]
        start = time.perf_counter()
        precision = self.graph_precision(graph)
        calibrated = precision == "int8"
        if calibrated and self.calibration is None:  # vop search / serve: text only, unless a video comes
            raise PrecisionError("--runtime openvino --precision int8 encodes videos with a graph calibrated on "
                                 "the collection's videos; query with --precision fp32 or bf16, or search an "
                                 "indexed video")
        key = graph_key(self.source, graph, precision, self.calibration.id if calibrated else None)
        if calibrated and self.int8_settings != INT8_SETTINGS:  # a probe's alternative: its own cache entry
            key["int8_settings"] = json.dumps(self.int8_settings, sort_keys=True)
        folder = key_dir(self.cache_root, key)
        xml = folder / "model.xml"
        cached = xml.is_file()
        if not cached:
            self._convert(graph, precision, key, folder)
        built = time.perf_counter()
        config = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": int(self.threads or torch.get_num_threads()),
            "CACHE_DIR": str(folder / "compiled"),
        }
        compiled = core().compile_model(str(xml), "CPU", config)
        self._compiled[graph] = compiled
        self._compiled[graph + ":request"] = compiled.create_infer_request()
        self.timings[graph] = {"precision": precision, "cached": cached, "build_s": built - start,
                               "compile_s": time.perf_counter() - built, "folder": str(folder)}
        if calibrated:
            self.timings[graph]["calibration"] = self.calibration.describe()
        return compiled

    def _convert(self, graph: str, precision: str, key: dict, folder: Path) -> None:
        """Export, convert (and quantize) ``graph``; write it to ``folder`` atomically."""
        import openvino

        program = export.export_video(self.source) if graph == "video" else export.export_text(self.source)
        ov_model = openvino.convert_model(program)
        if precision in ("int8", "int8-weights"):
            with _nncf_quiet():
                if precision == "int8":
                    layers = export.layer_names(program) if self.int8_settings.get("only_layer") else None
                    ov_model = quantize(ov_model, self.calibration, self.int8_settings, layers)
                else:
                    import nncf

                    ov_model = nncf.compress_weights(ov_model)  # int8 weights per channel, no data needed
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
        try:
            openvino.save_model(ov_model, str(tmp / "model.xml"), compress_to_fp16=False)
            (tmp / "key.json").write_text(json.dumps(key, indent=2, sort_keys=True) + "\n")
            try:
                os.rename(tmp, folder)  # atomic: a reader sees a whole entry or none
            except OSError:
                if not (folder / "model.xml").is_file():  # not another process's finished entry
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _nncf_quiet():
    """NNCF's progress bars and tables go to stderr, its log to warnings only: stdout belongs to the
    command (``vop search --json``, ``vop index --json``)."""
    import logging

    import nncf

    nncf.set_log_level(logging.WARNING)
    with contextlib.redirect_stdout(sys.stderr):
        yield


QUANTIZED_TYPES = ("MatMul", "Convolution")  # the ops whose inputs int8 quantizes here


def op_layer(op, layers: dict[str, str]) -> str:
    """The layer of an OpenVINO op: ``layers`` (:func:`vop.runtime.export.layer_names`) of its
    friendly name's prefix; the only convolution of a ViT is its patch embedding."""
    if op.get_type_name() == "Convolution":
        return "patch embedding"
    return layers.get(op.get_friendly_name().split("/", 1)[0], "unknown")


def ignored_scope(ov_model, keep_fp32, only_layer: str | None = None, layers: dict[str, str] | None = None):
    """An ``nncf.IgnoredScope`` naming the ``keep_fp32`` parts of ``ov_model`` (see :data:`INT8_SETTINGS`),
    and with ``only_layer`` every matrix product and convolution outside that layer (``layers``:
    :func:`vop.runtime.export.layer_names` of the program ``ov_model`` was converted from)."""
    import nncf

    names = []
    ops = list(ov_model.get_ordered_ops())
    if only_layer is not None:
        quantized = [op for op in ops if op.get_type_name() in QUANTIZED_TYPES]
        if not any(op_layer(op, layers or {}) == only_layer for op in quantized):
            raise ValueError(f"no matrix product or convolution of the graph is in layer {only_layer!r}")
        names += [op.get_friendly_name() for op in quantized if op_layer(op, layers or {}) != only_layer]
    if "patch" in keep_fp32:
        names += [op.get_friendly_name() for op in ops if op.get_type_name() == "Convolution"]
    if "mlp_out" in keep_fp32:  # each MLP's second matrix product: hidden (4 x width) -> width
        def narrows(op):
            i, o = op.input(0).get_partial_shape(), op.output(0).get_partial_shape()
            return i[-1].is_static and o[-1].is_static and i[-1].get_length() == 4 * o[-1].get_length()

        names += [op.get_friendly_name() for op in ops if op.get_type_name() == "MatMul" and narrows(op)]
    if "head" in keep_fp32:
        names += [op.get_friendly_name() for op in ops if op.get_type_name() == "MatMul"][-1:]
    names = list(dict.fromkeys(names))  # a part named twice (a kept part outside only_layer) once
    return nncf.IgnoredScope(names=names, validate=False) if names else None


def quantize(ov_model, calibration, settings: dict | None = None, layers: dict[str, str] | None = None):
    """NNCF post-training int8 quantization of a video graph on ``calibration``'s videos.

    ``settings`` (default :data:`INT8_SETTINGS`): the patch embedding and the output projection
    stay fp32 (every later layer inherits the first one's error, and the last one writes the
    vector itself; together a small share of the work); SmoothQuant (which moves part of an
    activation outlier's range into the weights) is off, since every alpha tried lowered the
    per-video cosine and the demo's top-10 overlap. ``benchmarks/runtime_quality.py --probe
    int8-settings`` measured the choice (docs/cpu-runtimes.md)."""
    import nncf
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
    )

    s = dict(INT8_SETTINGS, **(settings or {}))
    videos = calibration.load()  # list of [F, 3, S, S]
    items = [v[None].numpy() for v in videos]  # each one batch [1, F, 3, S, S]
    alpha = -1 if s["smooth_quant"] is None else s["smooth_quant"]  # NNCF: a negative alpha turns it off
    advanced = AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=alpha))
    kwargs = {}
    if s["model_type"] == "transformer":
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
    if s["preset"] is not None:
        kwargs["preset"] = {"mixed": nncf.QuantizationPreset.MIXED,
                            "performance": nncf.QuantizationPreset.PERFORMANCE}[s["preset"]]
    scope = ignored_scope(ov_model, s["keep_fp32"], s.get("only_layer"), layers)
    if scope is not None:
        kwargs["ignored_scope"] = scope
    return nncf.quantize(ov_model, nncf.Dataset(items), subset_size=len(items),
                         fast_bias_correction=s["fast_bias_correction"], advanced_parameters=advanced, **kwargs)
