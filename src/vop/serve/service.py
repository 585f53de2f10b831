"""Load several indexes over one shared backbone: one collection per adapter.

Decision: a collection is one index, named after its adapter. ``--adapters name=DIR`` names the
adapters and tells where they live; each index is matched to the adapter whose sha256 its
manifest records, so an index is never searched with another adapter. An index built without
an adapter is the ``zeroshot`` collection.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from vop.index.manifest import IndexMismatchError, adapter_sha256
from vop.index.search import Searcher, encoder_for_index


@dataclass
class Collection:
    name: str
    searcher: Searcher

    def describe(self) -> dict:
        m = self.searcher.manifest
        return {
            "name": self.name,
            "method": m.method,
            "adapter_sha256": m.adapter_sha256,
            "backbone": m.backbone_name,
            "frames": m.frames,
            "videos": len(self.searcher),
            "precision": self.searcher.encoder.precision,  # of the query encoder
            "index_precision": m.precision,
            "runtime": self.searcher.encoder.runtime,
            "index_runtime": m.runtime,
        }


class SearchService:
    """The collections of a server; ``lock`` serialises model forwards (one CPU, many requests)."""

    def __init__(self, collections: list[Collection]):
        if not collections:
            raise ValueError("no index to serve")
        self.collections = {c.name: c for c in collections}
        self.default = collections[0].name
        self.lock = threading.Lock()

    def get(self, name: str | None) -> Collection:
        name = name or self.default
        if name not in self.collections:
            raise KeyError(f"unknown adapter {name!r}; available: {', '.join(self.collections)}")
        return self.collections[name]

    def close(self) -> None:
        for c in self.collections.values():
            c.searcher.close()


def parse_named(items: list[str], what: str) -> list[tuple[str | None, str]]:
    """``["a=DIR", "DIR"]`` -> ``[("a", "DIR"), (None, "DIR")]``; an existing path is never split."""
    out = []
    for item in items:
        name, sep, path = item.partition("=")
        if sep and name and not Path(item).exists():
            out.append((name, path))
        elif what == "adapter":
            raise ValueError(f"--adapters expects NAME=DIR, got {item!r}")
        else:
            out.append((None, item))
    return out


def _adapter_for(searcher: Searcher, adapters: dict[str, str]) -> tuple[str, str | None]:
    """(collection name, adapter dir) for an index: the named adapter with the recorded sha256,
    else the adapter path stored in the manifest."""
    m = searcher.manifest
    if m.adapter_sha256 is None:
        return "zeroshot", None
    for name, directory in adapters.items():
        if adapter_sha256(directory) == m.adapter_sha256:
            return name, directory
    if m.adapter_path and Path(m.adapter_path).is_dir():
        return m.adapter_name or Path(m.adapter_path).name, m.adapter_path
    raise IndexMismatchError(
        f"index {searcher.index_dir} was built with adapter sha256 {m.adapter_sha256[:16]}... "
        f"({m.adapter_path}); none of --adapters matches and that folder is gone"
    )


def load_service(
    indexes: list[str], adapters: list[str] | None = None, backbone: str | None = None,
    precision: str = "fp32", roots: list[str] | None = None, runtime: str = "torch",
) -> SearchService:
    """Open every index, load the backbone once, and give each index its own adapter on top.

    ``backbone`` (``--backbone``) or else the first index's recorded backbone is resolved once
    (``resolve_backbone``) and that one CLIP object is handed to every index's encoder.
    ``runtime`` / ``precision`` run the query encoders (``vop.runtime``): torch int8 quantizes the
    shared backbone once every adapter is loaded onto it; openvino compiles each text graph now
    (from the cache when it is there), not on the first query.
    ``roots`` (``--root [NAME=]DIR``): the folder whose videos a collection serves, instead of the
    root its manifest records (``vop.index.served``)."""
    from vop.backbone.reference import resolve_backbone
    from vop.index.manifest import MANIFEST_NAME

    named_adapters = dict(parse_named(adapters or [], "adapter"))
    searchers = [(name, Searcher(path)) for name, path in parse_named(indexes, "index")]
    first = searchers[0][1].manifest
    for _, s in searchers[1:]:
        if s.manifest.backbone_sha256 != first.backbone_sha256:
            raise IndexMismatchError(
                f"{s.index_dir} and {searchers[0][1].index_dir} use different backbones; "
                "one server shares one backbone (run one server per backbone)"
            )
    clip = resolve_backbone(first.backbone, backbone, recorded_in=searchers[0][1].index_dir / MANIFEST_NAME)
    collections, used = [], set()
    for given_name, s in searchers:
        name, adapter_dir = _adapter_for(s, named_adapters)
        used.update(n for n, d in named_adapters.items() if d == adapter_dir)
        name = given_name or name
        if any(c.name == name for c in collections):
            raise ValueError(f"two indexes are both called {name!r}; name them: vop serve a=INDEX1 b=INDEX2")
        s.set_encoder(encoder_for_index(s.manifest, adapter=adapter_dir, clip=clip, index_dir=s.index_dir))
        collections.append(Collection(name, s))
    unused = sorted(set(named_adapters) - used)
    if unused:
        raise ValueError(
            f"--adapters {', '.join(unused)}: no given index was built with "
            f"{'it' if len(unused) == 1 else 'them'}; index the videos with that adapter first"
        )
    _set_roots(collections, roots or [])
    for c in collections:  # after all adapters are loaded: int8 replaces the shared backbone's layers
        c.searcher.encoder.set_runtime(runtime, precision)
        if runtime == "openvino":
            c.searcher.encoder.model.prepare("text")
    return SearchService(collections)


def _set_roots(collections: list[Collection], roots: list[str]) -> None:
    """``--root DIR`` (one index) or ``--root NAME=DIR`` (by collection name) for each given root."""
    by_name = {c.name: c for c in collections}
    for name, directory in parse_named(roots, "root"):
        if name is None and len(collections) != 1:
            raise ValueError(f"--root {directory}: {len(collections)} indexes are served; say which one: "
                             f"--root NAME=DIR (names: {', '.join(by_name)})")
        if name is not None and name not in by_name:
            raise ValueError(f"--root {name}=...: no served index is called {name!r} (names: {', '.join(by_name)})")
        (by_name[name] if name is not None else collections[0]).searcher.set_root(directory)
