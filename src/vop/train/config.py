"""Training configuration: dataclasses loaded from YAML recipes.

A recipe may name ``base:`` files (a path or a list, relative to the recipe) that are merged
first, so a dataset's settings live in one file and each method only states what differs.
Unknown keys are an error naming the file and the key (a typo must not silently fall back to a
default). ``--set a.b=c`` overrides are converted to the type of the field they replace.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class ModelConfig:
    backbone: str = "ViT-B-32"          # anything vop.load_clip accepts (file, HF dir, bundled name)
    method: str = "vop"
    frames: int = 12
    overrides: dict = field(default_factory=dict)  # method config values (see `vop methods`)
    grad_checkpointing: bool = False


@dataclass
class DataConfig:
    dataset: str = "csv"                # see vop.data.annotations.DATASETS
    annotations: str = ""
    videos: str | None = None
    train_split: str = "train"
    val_split: str | None = None        # a split of the benchmark, never its test split
    val_holdout: int = 0                # or: hold out this many training videos (seeded)
    test_split: str = "test"            # only `vop eval` reads it; validation may not equal it
    image_size: int | None = None       # None: the backbone's (its config); another value is an error
    context_length: int | None = None   # text tokens per caption, None: the backbone's; adapter.json records it
    cache: str | None = None
    num_workers: int = 0
    on_error: str = "skip"              # an undecodable video: "skip" (logged) or "raise"
    augment: bool = True                # train-time random crop + flip (off where left/right matters)
    group_batches: bool = False         # keep videos sharing an annotation `group` in one batch


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.2           # applied to >= 2-D trainable tensors only
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    epochs: int = 5
    batch_size: int = 32                # global batch: split evenly over the ranks
    warmup_fraction: float = 0.1        # of all steps, linear from 0, then cosine to 0
    grad_clip: float = 1.0              # max global grad norm; 0 disables


@dataclass
class EvalConfig:
    batch_size: int = 32
    every_epochs: int = 1
    every_steps: int = 0                # > 0: also validate every this many steps
    tie: str = "pessimistic"
    dsl: bool = False
    chunk: int = 0                      # queries per similarity block; 0 = from a memory budget
    select: str = "t2v_R@1"             # validation score that picks the adapter: t2v_R@1, t2v_rsum, rsum


@dataclass
class RunConfig:
    out_dir: str = "runs"               # the run folder is out_dir/name unless --out is given
    device: str = "auto"                # auto: cuda if available
    precision: str = "auto"             # auto: bf16 autocast on CUDA, fp32 on CPU; or fp32 / bf16
    threads: int = 0                    # torch CPU threads; 0 = leave torch's default
    log_every: int = 10
    checkpoint_every: int = 0           # steps; 0 = at the end of every epoch only
    max_steps: int = 0                  # > 0: stop the schedule after this many steps
    stop_after: int = 0                 # debug: save the checkpoint and quit at this step (a "kill")
    find_unused_parameters: bool = False


@dataclass
class TrainConfig:
    name: str = "run"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def validate(self) -> TrainConfig:
        if self.data.val_split is not None and self.data.val_split == self.data.test_split:
            raise ValueError(
                f"data.val_split {self.data.val_split!r} is the test split: a checkpoint must never be "
                "chosen on the test set (use another split or data.val_holdout)")
        from vop.eval.metrics import SELECT_SCORES

        if self.eval.select not in SELECT_SCORES:
            raise ValueError(f"eval.select must be one of {', '.join(SELECT_SCORES)}, got {self.eval.select!r}")
        if self.eval.tie not in ("pessimistic", "optimistic"):
            raise ValueError(f"eval.tie must be 'pessimistic' or 'optimistic', got {self.eval.tie!r}")
        if self.run.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"run.precision must be auto, fp32 or bf16, got {self.run.precision!r}")
        if self.data.on_error not in ("skip", "raise"):
            raise ValueError(f"data.on_error must be 'skip' or 'raise', got {self.data.on_error!r}")
        if self.optim.batch_size < 1 or self.model.frames < 1:
            raise ValueError("optim.batch_size and model.frames must be >= 1")
        return self


# --------------------------------------------------------------------------- conversion


def _is_dataclass_type(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp, key: str) -> Any:
    """Convert ``value`` (from YAML or a ``--set`` string) to the field type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~")):
            return None
        return _coerce(value, args[0], key)
    try:
        if tp is bool:
            if isinstance(value, str):
                if value.lower() in ("true", "yes", "1", "on"):
                    return True
                if value.lower() in ("false", "no", "0", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
        if tp is float:
            return float(value)
        if tp is str:
            if isinstance(value, (dict, list)):
                raise ValueError(value)
            return str(value)
        if tp in (tuple, list) or origin in (tuple, list):
            value = _safe_yaml(value, "value") if isinstance(value, str) else value
            return tuple(value) if (tp is tuple or origin is tuple) else list(value)
        if tp is dict or origin is dict:
            value = _safe_yaml(value, "value") if isinstance(value, str) else value
            if not isinstance(value, dict):
                raise ValueError(value)
            return dict(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config key {key!r}: cannot use {value!r} as {getattr(tp, '__name__', tp)}") from exc
    return value


def _build(cls, data: dict, where: str, prefix: str = ""):
    if not isinstance(data, dict):
        raise TypeError(f"{where}: {prefix.rstrip('.') or 'the top level'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown config key(s) {[prefix + k for k in unknown]}; "
                         f"valid keys under {prefix.rstrip('.') or 'the top level'!r}: {sorted(names)}")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if _is_dataclass_type(tp):
            kwargs[name] = _build(tp, value or {}, where, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, tp, prefix + name)
    return cls(**kwargs)


def _deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


MAX_YAML_NODES = 100_000  # values in one recipe (the shipped ones hold under 100)


class _RecipeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` without aliases and with at most ``MAX_YAML_NODES`` values: an alias
    (``*a``) is a reference, so 457 bytes of nested aliases stand for 10^6 values once the recipe
    is copied or merged (the "billion laughs"); recipes name ``base:`` files instead."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"aliases (*{str(event.anchor)[:40]}) are not accepted in "
                                              "a recipe; use 'base:' files to share values", event.start_mark)
        self._vop_nodes = getattr(self, "_vop_nodes", 0) + 1
        if self._vop_nodes > MAX_YAML_NODES:
            raise yaml.composer.ComposerError(None, None, f"more than {MAX_YAML_NODES:,} values in one recipe",
                                              self.peek_event().start_mark)
        return super().compose_node(parent, index)


def _safe_yaml(text: str, where: str):
    """Safe YAML (:class:`_RecipeLoader`) whose errors are one line: the file, the line and YAML's reason."""
    try:
        return yaml.load(text, Loader=_RecipeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"{where}: not valid YAML{at}: {err.problem or err.context}") from None
    except (yaml.YAMLError, RecursionError) as err:
        raise ValueError(f"{where}: not valid YAML ({type(err).__name__})") from None


def read_yaml_with_bases(path: str | Path, _seen: tuple = ()) -> dict:
    """The recipe at ``path`` merged on top of its ``base:`` files (recursively)."""
    path = Path(path).resolve()
    if path in _seen:
        raise ValueError(f"{path}: circular 'base:' chain {[str(p) for p in _seen]}")
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    data = _safe_yaml(path.read_text(encoding="utf-8", errors="replace"), str(path)) or {}
    if not isinstance(data, dict):
        raise TypeError(f"{path}: a config must be a YAML mapping")
    bases = data.pop("base", None) or []
    merged: dict = {}
    for b in [bases] if isinstance(bases, str) else bases:
        merged = _deep_merge(merged, read_yaml_with_bases(path.parent / b, _seen + (path,)))
    return _deep_merge(merged, data)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``["optim.lr=1e-4", "model.overrides.prompt_length=4"]`` merged into the raw config dict."""
    data = json.loads(json.dumps(data))  # deep copy; never write into the caller's dict
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise TypeError(f"--set {key}: {p!r} is not a section")
        # inside free-form dicts (model.overrides) the YAML reading of the string decides the type
        node[parts[-1]] = _safe_yaml(value, f"--set {key}") if parts[:2] == ["model", "overrides"] else value
    return data


def config_from_dict(data: dict, where: str = "<config>") -> TrainConfig:
    return _check_method(_build(TrainConfig, data, where).validate(), where)


def _check_method(cfg: TrainConfig, where: str) -> TrainConfig:
    """``model.method`` and ``model.overrides`` resolve to known components with values of the
    right type and range (one line naming the recipe); sizes that need the backbone are checked
    when the model is built (``vop.model.plan_method``)."""
    from vop.limits import MAX_FRAMES, check_int
    from vop.model import resolve_method
    from vop.prompts.base import check_values

    try:
        check_int(cfg.model.frames, 1, MAX_FRAMES, "frames")
        for c in resolve_method(cfg.model.method, cfg.model.overrides):
            check_values(c)
    except (KeyError, ValueError, TypeError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        raise ValueError(f"{where}: model: {msg}") from None
    return cfg


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """A :class:`TrainConfig` from a YAML recipe (with its bases) and ``--set`` overrides."""
    data = apply_overrides(read_yaml_with_bases(path), overrides or [])
    return config_from_dict(data, where=str(path))
