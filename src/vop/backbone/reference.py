"""One backbone reference, written the same way everywhere, and one function that resolves it.

:class:`BackboneRef` says which frozen CLIP a file was made with: its config (name and full
architecture), where it was loaded from (a path or a bundled name) and in which format, and the
sha256 of its weights. ``adapter.json`` stores it under ``backbone``, the index's
``manifest.json`` under ``backbone`` too (``BackboneRef.to_dict``).

:func:`resolve_backbone` is how every command turns "the backbone recorded in that file" plus an
optional ``--backbone`` into a loaded CLIP: the explicit value wins, otherwise the recorded
source is loaded; the recorded architecture is passed along (a bare state dict does not declare
one), and the recorded sha256 must equal the loaded weights' (one line naming both files if not).

Older files keep loading: adapter.json wrote ``source`` as ``"<format>:<path>"`` and index
manifests (format 1) kept ``backbone_name`` / ``backbone_source`` / ``backbone_sha256`` flat;
:meth:`BackboneRef.from_dict` and :meth:`BackboneRef.from_flat` read them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

# how load_clip read the weights; "random": built by build_clip, not loadable from anywhere
FORMATS = ("safetensors", "state-dict", "openai-torchscript", "hf", "bundled", "random")


class BackboneMismatchError(ValueError):
    """The backbone given (or found) is not the one a file was made with."""


@dataclass(frozen=True)
class BackboneRef:
    name: str  # CLIPConfig.name
    weights_sha256: str
    source: str | None = None  # absolute path, or a bundled model's name; None: nowhere to load from
    format: str | None = None  # one of FORMATS; None: not recorded (older files)
    config: dict | None = None  # CLIPConfig.to_dict(); None: not recorded (older files)

    @classmethod
    def of(cls, clip, weights_sha256: str | None = None) -> BackboneRef:
        """The reference of a loaded CLIP (``weights_sha256`` overrides the one computed now)."""
        fmt = getattr(clip, "source_format", None)
        source = getattr(clip, "source", None)
        if fmt == "random" or source in (None, "random", "unknown"):
            source = None
        return cls(clip.cfg.name, weights_sha256 or clip.weights_sha256, source, fmt, clip.cfg.to_dict())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> BackboneRef:
        """A recorded ``backbone`` object (validated by the reader), old ``"<format>:<path>"`` too."""
        source, fmt = data.get("source"), data.get("format")
        if fmt is None and isinstance(source, str):
            kind, sep, where = source.partition(":")
            if sep and kind in FORMATS:  # the old adapter.json spelling
                source, fmt = where, kind
            elif source in ("random", "unknown"):
                source, fmt = None, ("random" if source == "random" else None)
        return cls(data["name"], data["weights_sha256"], source or None, fmt, data.get("config"))

    @classmethod
    def from_flat(cls, name: str, source: str | None, sha256: str) -> BackboneRef:
        """The three flat fields of a format-1 index manifest."""
        return cls.from_dict({"name": name, "source": source, "weights_sha256": sha256})

    def describe(self) -> str:
        where = self.source or "no recorded file"
        return f"{self.name} (weights sha256 {self.weights_sha256[:16]}..., from {where})"


def validate_ref(data, err) -> None:
    """Types and sizes of a recorded ``backbone`` object; ``err(msg)`` builds the exception."""
    from vop.limits import check_str, check_tree

    if not isinstance(data, dict):
        raise err("backbone must be an object with name and weights_sha256")
    check_str(data.get("name"), "backbone.name", err, max_len=200)
    check_str(data.get("weights_sha256"), "backbone.weights_sha256", err, max_len=128)
    check_str(data.get("source"), "backbone.source", err, optional=True)
    check_str(data.get("format"), "backbone.format", err, optional=True, max_len=100)
    if data.get("config") is not None:
        if not isinstance(data["config"], dict):
            raise err("backbone.config must be an object")
        check_tree(data["config"], "backbone.config", err)


def resolve_backbone(recorded: BackboneRef | None = None, backbone: str | Path | None = None, *,
                     config: str | None = None, recorded_in: str | Path | None = None, clip=None,
                     need: str = "--backbone is required (CLIP weights: a file, an HF folder or a bundled name)"):
    """The CLIP to use with a file that recorded ``recorded`` (None: nothing recorded).

    ``backbone`` (the user's ``--backbone``) wins over the recorded source; ``config`` (``--config``)
    over the architecture the weights declare, which wins over the recorded one (used when the
    weights declare none, e.g. a bare state dict). ``clip`` is an already loaded backbone to check instead of
    loading one (a server shares one between indexes). ``need`` is the error when there is
    nothing to load. Raises ``BackboneMismatchError`` when the weights' sha256 differs from the
    recorded one, ``ValueError`` / ``FileNotFoundError`` / ``CheckpointError`` otherwise.
    """
    if clip is None:
        source = backbone if backbone is not None else (recorded.source if recorded else None)
        if source is None:
            if recorded is not None:
                need = (f"{recorded_in or 'the file'} records backbone {recorded.name} but no file to load "
                        f"it from; pass --backbone")
            raise ValueError(need)
        from vop.backbone import loading

        default = _recorded_config(recorded) if recorded is not None else None
        clip = loading.load_clip(source, config=config, default_config=default)
    if recorded is not None and clip.weights_sha256 != recorded.weights_sha256:
        raise BackboneMismatchError(
            f"{_where(clip)}: weights sha256 {clip.weights_sha256[:16]}... differ from the backbone "
            f"{recorded_in or 'the file'} was made with, {recorded.describe()}; pass --backbone with those weights")
    return clip


def _recorded_config(recorded: BackboneRef):
    """The recorded architecture: a known config by name, else the recorded config dict."""
    from vop.backbone.clip import CONFIGS, CLIPConfig

    if recorded.name in CONFIGS:
        return recorded.name
    if recorded.config is not None:
        try:
            return CLIPConfig.from_dict(recorded.config)
        except (TypeError, KeyError, ValueError):
            return None  # the weights may still declare their own
    return None


def _where(clip) -> str:
    source = getattr(clip, "source", None)
    return str(source) if source not in (None, "random") else f"the given backbone {clip.cfg.name}"


__all__ = ["FORMATS", "BackboneMismatchError", "BackboneRef", "resolve_backbone", "validate_ref"]
