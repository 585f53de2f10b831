"""Turn video files and text queries into unit vectors with one backbone (+ adapter).

The model is anything with the ``vop.model`` interface (``encode_video([B, F, 3, S, S])`` and
``encode_text([B, L])``, both L2-normalised). The same encoder object writes the index and
encodes its queries, and :meth:`VideoEncoder.identity` is what the manifest records.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vop.index.manifest import adapter_sha256

THUMB_SIZE = 192  # longest side of the stored JPEG thumbnail, pixels
DEFAULT_FRAMES = 12


@dataclass
class EncodedVideo:
    vector: np.ndarray  # float32 [dim], unit norm
    duration: float | None
    num_frames: int
    width: int
    height: int
    thumbnail: bytes
    warning: str | None = None  # e.g. "truncated: 85 of 310 frames": indexed from the frames that exist


def build_video_model(clip, adapter: str | Path | None = None, frames: int | None = None):
    """The retrieval model: ``load_adapter(adapter, clip)`` or zero-shot CLIP with ``frames`` frames.

    The backbone object is shared, not copied, so several adapters cost one backbone in memory.
    """
    from vop.adapter import load_adapter
    from vop.model import build_model

    if adapter is None:
        return build_model(clip, method="zeroshot", frames=frames or DEFAULT_FRAMES)
    model = load_adapter(adapter, clip)
    if frames is not None and frames != model.frames:
        raise ValueError(
            f"adapter {adapter} was trained with {model.frames} frames; --frames {frames} differs"
        )
    return model


class VideoEncoder:
    """One backbone + one method/adapter: video files and texts -> unit vectors (numpy float32)."""

    def __init__(self, clip, model, backbone_source: str, adapter_dir: str | Path | None = None):
        self.clip = clip
        self.model = model.eval()
        self.backbone_source = backbone_source
        self.adapter_dir = None if adapter_dir is None else Path(adapter_dir).resolve()
        self._adapter_sha = None if adapter_dir is None else adapter_sha256(adapter_dir)

    @classmethod
    def from_clip(cls, clip, adapter=None, frames=None, backbone_source=None) -> VideoEncoder:
        model = build_video_model(clip, adapter, frames)
        return cls(clip, model, backbone_source or getattr(clip, "source", "unknown"), adapter)

    @property
    def frames(self) -> int:
        return int(self.model.frames)

    @property
    def image_size(self) -> int:
        return int(self.clip.cfg.vision.image_size)

    @property
    def dim(self) -> int:
        return int(self.clip.cfg.embed_dim)

    def identity(self) -> dict:
        """The manifest fields that pin down which embedding space the vectors live in."""
        return {
            "backbone_name": self.clip.cfg.name,
            "backbone_source": self.backbone_source,
            "backbone_sha256": self.clip.weights_sha256,
            "method": str(getattr(self.model, "method", "zeroshot")),
            "frames": self.frames,
            "image_size": self.image_size,
            "dim": self.dim,
            "adapter_name": None if self.adapter_dir is None else self.adapter_dir.name,
            "adapter_path": None if self.adapter_dir is None else str(self.adapter_dir),
            "adapter_sha256": self._adapter_sha,
        }

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """``N`` strings -> float32 ``[N, dim]`` unit vectors."""
        from vop.backbone.tokenizer import tokenize

        tokens = tokenize(list(texts), context_length=self.model.context_length, truncate=True)
        return _unit(self.model.encode_text(tokens))

    def decode(self, path: str | Path) -> tuple:
        """``frames`` uniformly sampled frames (uint8 ``[F, H, W, 3]``) and the probe info.

        Separate from :meth:`encode_decoded` so that the indexer can decode the next video in a
        thread while the model runs (PyAV releases the GIL). Raises ``DecodeError``.
        """
        import dataclasses

        from vop.data.decode import DecodeError, probe, read_frames
        from vop.data.sampling import sample_indices

        info = probe(path)
        short = max(self.image_size, THUMB_SIZE)
        try:
            return read_frames(path, sample_indices(info.num_frames, self.frames, train=False), short), info
        except DecodeError as err:
            found = getattr(err, "decodable", 0)  # the stream ended early: the header promised more
            if not found:
                raise
        # sample only frames that exist, and say so
        frames = read_frames(path, sample_indices(found, self.frames, train=False), short)
        warning = f"truncated: {found} of {info.num_frames} frames"
        return frames, dataclasses.replace(info, num_frames=found, warning=warning)

    @torch.no_grad()
    def encode_decoded(self, decoded: tuple) -> EncodedVideo:
        from vop.data.transforms import clip_preprocess

        frames, info = decoded
        video = clip_preprocess(frames, size=self.image_size)  # [F, H, W, 3] uint8 -> [F, 3, S, S]
        vector = _unit(self.model.encode_video(video[None]))[0]  # [1, F, 3, S, S] -> [E]
        return EncodedVideo(
            vector,
            info.duration,
            info.num_frames,
            info.width,
            info.height,
            make_thumbnail(frames[len(frames) // 2]),
            getattr(info, "warning", None),
        )

    def encode_file(self, path: str | Path) -> EncodedVideo:
        """Decode and encode one video file; raises ``DecodeError``."""
        return self.encode_decoded(self.decode(path))


def _unit(x: torch.Tensor) -> np.ndarray:
    x = torch.nn.functional.normalize(x.float(), dim=-1)  # already unit in vop.model; cheap insurance
    return x.cpu().numpy().astype(np.float32)


def make_thumbnail(frame: np.ndarray, size: int = THUMB_SIZE) -> bytes:
    """uint8 ``[H, W, 3]`` -> JPEG bytes, longest side ``size``."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(frame))
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def load_encoder(
    backbone: str,
    adapter: str | Path | None = None,
    frames: int | None = None,
    config: str | None = None,
    clip=None,
) -> VideoEncoder:
    """Load the backbone from local files (``vop.load_clip``) and build the encoder.

    ``clip`` reuses an already loaded backbone (the server shares one between adapters).
    """
    if clip is None:
        from vop import load_clip

        clip = load_clip(backbone, config=config)
    source = str(Path(backbone).resolve()) if Path(backbone).exists() else str(backbone)
    return VideoEncoder(clip, build_video_model(clip, adapter, frames), source, adapter)
