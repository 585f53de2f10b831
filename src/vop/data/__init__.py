"""Data: annotations -> records, decoding, sampling, transforms, the frame cache, and the one
file-to-tensor path (``read_video`` / ``model_input`` / ``load_video``) and loader factory
(``make_loader``) of ``vop.data.dataset``, importable from here (lazily: no torch at import)."""

_DATASET = ("load_video", "make_loader", "model_input", "read_video")


def __getattr__(name):
    if name in _DATASET:
        from vop.data import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'vop.data' has no attribute {name!r}")
