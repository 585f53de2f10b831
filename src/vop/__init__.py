"""vop: text-video retrieval by co-operative prompt tuning of a frozen CLIP (VoP, CVPR 2023).

Heavy submodules are imported lazily so that ``import vop`` and ``vop --help`` stay fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "CLIP": "vop.backbone.clip",
    "CLIPConfig": "vop.backbone.clip",
    "build_clip": "vop.backbone.clip",
    "get_config": "vop.backbone.clip",
    "list_configs": "vop.backbone.clip",
    "load_clip": "vop.backbone.loading",
    "tokenize": "vop.backbone.tokenizer",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vop' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
