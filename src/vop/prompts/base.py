"""What a method component must provide, and the one registry of component types.

A method (``vop.model.METHODS``) is a list of component configs: ``{"type": NAME, key: value,
...}``. ``NAME`` is a key of :data:`COMPONENTS`, the registry that adapter.json's saved lists are
rebuilt from, so a component class is found by the name a file names, never by importing what a
file says. A component class provides:

* ``name``: its type name (what methods and adapter.json write);
* ``role``: the seam of the forward pass it plugs into (:data:`ROLES`); a model has at most one
  component per prompt role;
* ``defaults``: its config keys with their default values (a method lists only what differs;
  ``build_model(..., overrides=)`` sets these keys); ``optional`` (if any) names keys that may be
  given but have no default, and any other key is an error; ``limits`` (if any) gives the
  ``(lo, hi)`` range of integer keys (prompt lengths: 0 to ``vop.limits.MAX_PROMPT_TOKENS``), and
  :func:`check_values` checks every value's type against its default;
* ``from_config(c, clip_cfg, frames)``: the component built from a complete config ``c``;
* for a prompt role, it is an ``nn.Module`` whose parameters are all trained and whose
  ``prompts(...)`` gives the tokens ``vop.backbone.prompted`` places (see the protocols there);
  ``needs_frames = True`` when it holds one row per frame index;
* for ``"backbone"``, ``select(clip)`` returns the backbone tensors it trains (the model then
  works on a private copy of CLIP).

A new role is a new seam: it needs code in ``vop.backbone.prompted`` and ``vop.model``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vop.limits import MAX_PROMPT_TOKENS

PROMPT_RANGE = (0, MAX_PROMPT_TOKENS)  # the ``limits`` of a prompt length key
INIT_STD = 0.02  # prompt tokens start at N(0, 0.02): small, and still distinct from each other
# K^s, the first inter-frame layer of VoP-F*: the paper's 8 of 12 layers, written as the fraction
# 2/3 so that it means the same on other depths (4 of 6 on the demo's backbone)
K_S = 2 / 3

# role -> where it acts
ROLES = {
    "text": "tokens before the words in every text layer",
    "visual": "tokens per frame in the frame-level (shallow) vision layers",
    "deep": "inter-frame vision layers from K^s on (one sequence per video)",
    "backbone": "trains backbone tensors (the model gets a private copy of CLIP)",
}

COMPONENTS: dict[str, type] = {}


def register_component(cls: type) -> type:
    """Make ``cls`` buildable by its ``name`` (usable as a class decorator); returns ``cls``."""
    for attr in ("name", "role", "defaults", "from_config"):
        if not hasattr(cls, attr):
            raise TypeError(f"component {cls.__name__} has no {attr!r} (see vop.prompts.base)")
    if cls.role not in ROLES:
        raise ValueError(f"component {cls.name!r}: role {cls.role!r} is not one of {list(ROLES)}")
    if cls.role == "backbone" and not hasattr(cls, "select"):
        raise TypeError(f"backbone component {cls.name!r} has no select(clip)")
    if cls.role != "backbone" and not (issubclass(cls, nn.Module) and hasattr(cls, "prompts")):
        raise TypeError(f"prompt component {cls.name!r} must be an nn.Module with prompts(...)")
    if "type" in cls.defaults:
        raise ValueError(f"component {cls.name!r}: 'type' is not a config key")
    if COMPONENTS.get(cls.name, cls) is not cls:
        raise ValueError(f"component type {cls.name!r} is already registered ({COMPONENTS[cls.name].__name__})")
    COMPONENTS[cls.name] = cls
    return cls


def complete(c: str | dict) -> dict:
    """A component config with every default filled in: ``"text"`` or ``{"type": "text", ...}``
    -> ``{"type": "text", <defaults in declaration order>, <other given keys>}``."""
    c = {"type": c} if isinstance(c, str) else dict(c)
    cls = COMPONENTS.get(c.get("type"))
    if cls is None:
        raise KeyError(f"unknown component type {c.get('type')!r}; known: {', '.join(COMPONENTS)}")
    allowed = {"type", *cls.defaults, *getattr(cls, "optional", ())}
    unknown = sorted(set(c) - allowed)
    if unknown:
        raise KeyError(f"component {cls.name!r} has no key(s) {unknown}; its keys: {sorted(allowed - {'type'})}")
    return {"type": cls.name, **cls.defaults, **c}


def check_values(c: dict) -> dict:
    """Refuse a complete component config whose values have the wrong type or range (a value read
    from adapter.json or a recipe decides tensor sizes): a key with a bool, str or number default
    takes that kind of value (a float or ``None`` default: a number or ``None``), numbers are finite, and
    the integer keys of the class's ``limits`` lie in their range; an integer default takes an
    integer. Returns ``c``."""
    cls = COMPONENTS[c["type"]]
    limits = getattr(cls, "limits", {})
    for key, value in c.items():
        if key == "type":
            continue
        default, what = cls.defaults.get(key), f"component {cls.name!r}: {key}"
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key in limits:
            lo, hi = limits[key]
            if not (isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi) and not (
                    value is None and key not in cls.defaults):
                raise ValueError(f"{what} is {str(value)[:40]!r}; expected an integer from {lo} to {hi}")
        elif isinstance(default, bool) and not isinstance(value, bool):
            raise ValueError(f"{what} is {str(value)[:40]!r}; expected true or false")
        elif isinstance(default, str) and not isinstance(value, str):
            raise ValueError(f"{what} is {str(value)[:40]!r}; expected a string")
        elif isinstance(default, int) and not isinstance(default, bool) and not (
                isinstance(value, int) and not isinstance(value, bool)):
            raise ValueError(f"{what} is {str(value)[:40]!r}; expected an integer")
        elif (default is None or isinstance(default, float)) and not (
                value is None or (number and math.isfinite(value))):  # None: K^s = K (resolve_depth)
            raise ValueError(f"{what} is {str(value)[:40]!r}; expected a finite number or null")
    return c


def init_tokens(*shape: int) -> nn.Parameter:
    """New prompt tokens of ``shape``, drawn from N(0, INIT_STD)."""
    return nn.Parameter(torch.randn(*shape) * INIT_STD)


def resolve_depth(s: float | None, layers: int) -> int:
    """K^s as a layer count: None -> K; a fraction in (0, 1) -> round(K * s); a negative int ->
    K + s (at least 1); otherwise the int itself."""
    if s is None:
        return layers
    if isinstance(s, float) and 0 < s < 1:
        return max(1, round(layers * s))
    return max(1, layers + int(s)) if s < 0 else int(s)


def shallow_depth(c: dict, clip_cfg) -> int:
    """How many (first) vision layers get frame-level prompts: ``shallow_layers`` (see
    :func:`resolve_depth`) or all K."""
    k = clip_cfg.vision.layers
    ks = resolve_depth(c.get("shallow_layers"), k)
    if not 0 <= ks <= k:
        raise ValueError(f"shallow_layers={ks} is outside 0..{k} (the vision encoder has {k} layers)")
    return ks
