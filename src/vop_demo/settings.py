"""What decides the demo's numbers: the runs (a method, maybe with overrides), the training
settings (:class:`DemoSettings`, hashed so that finished runs are reused) and the bundled
backbone's name. How the values were chosen (on validation only) is in ``docs/demo.md`` and
``docs/demo-notes.md``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, astuple, dataclass, field, replace

from vop_demo.world.spec import SplitPairs, WorldSpec

BACKBONE = "tiny-synthetic"  # the bundled CLIP the demo adapts (vop/assets/tiny-synthetic.*)
RESULT_VERSION = 4  # bump when scoring adds or changes numbers: finished runs are scored again, not retrained


@dataclass(frozen=True)
class RunSpec:
    """One row of the table: a method, maybe with overrides (a control)."""

    method: str
    overrides: tuple[tuple[str, object], ...] = ()


RUNS: dict[str, RunSpec] = {
    "zeroshot": RunSpec("zeroshot"),
    "full": RunSpec("full"),
    "vop": RunSpec("vop"),
    "vop-p": RunSpec("vop-p"),
    "vop-f": RunSpec("vop-f"),
    "vop-fc": RunSpec("vop-fc"),
    # K1, the control: vop-f whose frame positional embedding stays zero sees frames as a set
    "vop-f-nopos": RunSpec("vop-f", (("frame_position", False),)),
}
DEFAULT_RUNS = tuple(RUNS)


def run_spec(name: str) -> RunSpec:
    """A row of :data:`RUNS`, or any method of ``vop methods`` by name."""
    from vop.model import list_methods

    if name in RUNS:
        return RUNS[name]
    if name in list_methods():
        return RunSpec(name)
    raise KeyError(f"unknown method {name!r}; known: {', '.join(list(RUNS) + list_methods())}")


@dataclass(frozen=True)
class DemoSettings:
    """Everything that decides the demo's numbers (hashed, so finished runs are reused)."""

    methods: tuple[str, ...] = DEFAULT_RUNS
    seeds: tuple[int, ...] = (0,)
    data_seed: int = 0
    pairs: tuple[int, int, int] = astuple(SplitPairs())  # reverse pairs in train / val / test
    updates: int = 600
    batch_size: int = 16  # clips; a clip and its reversed partner share a batch (group_batches)
    validate_every: int = 50  # updates
    select: str = "t2v_rsum"  # validation R@1+R@5+R@10 picks the adapter (R@1 alone is a coin flip for order-free runs)
    lr: dict = field(default_factory=lambda: {"full": 6e-4, "default": 6e-2})  # on validation: docs/demo.md
    weight_decay: float = 0.2
    threads: int = 1  # torch threads per run
    jobs: int = 2  # runs trained at once, each in its own process (2 x 1 thread fills 2 cores best)

    def lr_for(self, method: str) -> float:
        return self.lr.get(method, self.lr["default"])

    def split_pairs(self) -> SplitPairs:
        return SplitPairs(*self.pairs)

    def train_key(self, name: str, seed: int, spec: RunSpec | None = None, backbone_sha: str | None = None) -> str:
        """What decides the trained adapter of (run, seed): ``spec`` (default ``run_spec(name)``),
        these settings and the backbone's weights (``backbone_sha``; default the bundled one's)."""
        from vop_demo.backbone import bundled_sha256

        blob = {k: v for k, v in asdict(self).items() if k not in ("methods", "seeds", "threads", "jobs")}
        spec = spec or run_spec(name)
        blob.update(run=name, method=spec.method, overrides=list(spec.overrides), seed=seed,
                    lr=self.lr_for(spec.method), world=WorldSpec().__repr__(),
                    backbone=backbone_sha or bundled_sha256())
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def key(self, name: str, seed: int, spec: RunSpec | None = None, backbone_sha: str | None = None) -> str:
        """:meth:`train_key` and how the run is scored (:data:`RESULT_VERSION`): a finished run
        whose result has this key is reused as it is."""
        blob = [self.train_key(name, seed, spec, backbone_sha), RESULT_VERSION]
        return hashlib.sha256(json.dumps(blob).encode()).hexdigest()[:16]


SETTINGS = {
    "full": DemoSettings(),
    # --quick: the same pipeline on a handful of clips (tests, smoke checks); numbers meaningless
    "quick": DemoSettings(methods=("zeroshot", "vop", "vop-f"), pairs=(6, 4, 4), updates=4, batch_size=4,
                          validate_every=2, jobs=1),
}


def with_overrides(settings: DemoSettings, methods=None, seeds=None, threads=None, data_seed=None,
                   jobs=None) -> DemoSettings:
    """``settings`` with the command line's choices (``None``: keep)."""
    changes = {k: tuple(v) if isinstance(v, list) else v
               for k, v in (("methods", methods), ("seeds", seeds), ("threads", threads), ("jobs", jobs)) if v}
    if data_seed is not None:
        changes["data_seed"] = data_seed
    return replace(settings, **changes)
