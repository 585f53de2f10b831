"""Turn video files and text queries into unit vectors with one backbone (+ adapter).

The model is anything with the ``vop.model`` interface (``encode_video([B, F, 3, S, S])`` and
``encode_text([B, L])``, both L2-normalised). The same encoder object writes the index and
encodes its queries, and :meth:`VideoEncoder.identity` is what the manifest records.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vop.backbone.reference import BackboneRef
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
    from_cache: bool = False  # the frames came from the frame cache (vop index --cache)


@dataclass
class PreparedVideo:
    """A decoded video made ready for the model (:meth:`VideoDecoder.prepare`): the work the
    indexer's decode workers do off the model's thread."""

    video: torch.Tensor  # [F, 3, S, S] float32, CLIP-normalised: what encode_video takes per clip
    info: object  # the probe info (duration, frames, size, warning)
    thumbnail: bytes  # the JPEG thumbnail
    from_cache: bool


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


@dataclass
class VideoDecoder:
    """Video file -> the model's frames, probe info and thumbnail frame (no model needed)."""

    frames: int
    image_size: int
    cache: object | None = None  # a ``vop prepare`` FrameCache

    def decode(self, path: str | Path) -> tuple:
        """The model's ``frames`` frames (uint8 ``[F, H, W, 3]``, from the frame cache when it holds
        the file), the probe info, the thumbnail frame and whether the frames came from the cache.

        Separate from the model (:meth:`prepare`, then :meth:`VideoEncoder.encode_prepared`) so that
        the indexer's decode workers decode and prepare the next videos in threads while the model
        runs (PyAV and torch release the GIL). Raises ``DecodeError``.
        """
        from vop.data.annotations import VideoRecord
        from vop.data.dataset import read_video
        from vop.data.decode import DecodeError, probe

        info = probe(path)
        cached = self.cache.id_for_file(path) if self.cache is not None else None
        record = VideoRecord(cached or str(path), Path(path), [], "")
        cache = self.cache if cached is not None else None
        try:
            frames = read_video(record, self.frames, self.image_size, cache=cache, num_frames=info.num_frames)
        except DecodeError as err:
            found = getattr(err, "decodable", 0)  # the stream ended early: the header promised more
            if not found:
                raise
            # sample only frames that exist, and say so
            frames = read_video(record, self.frames, self.image_size, num_frames=found)
            info = dataclasses.replace(info, num_frames=found, warning=f"truncated: {found} of {info.num_frames} frames")
        return frames, info, self._thumbnail_frame(path, frames, info, cached is not None), cached is not None

    def prepare(self, decoded: tuple) -> PreparedVideo:
        """:meth:`decode`'s result -> the model's input tensor and the JPEG thumbnail (resizing,
        normalising and JPEG encoding: a worker thread's job while the model runs)."""
        from vop.data.dataset import model_input

        frames, info, thumb, from_cache = decoded
        video = model_input(frames, self.image_size)  # [F, H, W, 3] uint8 -> [F, 3, S, S], as in vop eval
        return PreparedVideo(video, info, make_thumbnail(thumb), from_cache)

    def _thumbnail_frame(self, path, frames: np.ndarray, info, cached: bool) -> np.ndarray:
        """The middle model frame; re-read at ``THUMB_SIZE`` when the model's image size made it
        smaller than a thumbnail and the video is bigger (backbones under 192 px only)."""
        middle = frames[len(frames) // 2]
        if cached or min(middle.shape[:2]) >= THUMB_SIZE or min(info.width, info.height) <= min(middle.shape[:2]):
            return middle
        from vop.data.decode import read_frames
        from vop.data.sampling import sample_indices

        index = sample_indices(info.num_frames, self.frames, train=False)[len(frames) // 2]
        return read_frames(path, [index], short_side=THUMB_SIZE)[0]


class VideoEncoder:
    """One backbone + one method/adapter: video files and texts -> unit vectors (numpy float32).

    Videos take ``vop.data``'s one path (``read_video`` + ``model_input``), exactly as in ``vop eval``;
    with ``cache`` (a ``vop prepare`` frame cache) a video the cache holds is read from it.
    ``backbone`` is the :class:`~vop.backbone.reference.BackboneRef` written into the manifest
    (default: the clip's own; a string names the file the clip's weights live in).
    """

    def __init__(self, clip, model, backbone: BackboneRef | str | None = None, adapter_dir: str | Path | None = None,
                 precision: str = "fp32", cache=None, runtime: str = "torch", calibration=None):
        self.clip = clip
        self.torch_model = model.eval()  # fp32, adapter loaded: what every runtime starts from
        self.model = self.torch_model  # what runs (vop.runtime.prepare)
        ref = BackboneRef.of(clip, getattr(model, "backbone_sha256", None))
        if isinstance(backbone, BackboneRef):
            ref = backbone
        elif backbone is not None:
            where = Path(backbone).resolve() if Path(backbone).exists() else backbone
            ref = dataclasses.replace(ref, source=str(where))
        self.backbone = ref
        self.adapter_dir = None if adapter_dir is None else Path(adapter_dir).resolve()
        self._adapter_sha = None if adapter_dir is None else adapter_sha256(adapter_dir)
        self.cache = cache
        self.runtime, self.precision, self.calibration = "torch", "fp32", None
        self.set_runtime(runtime, precision, calibration)

    @classmethod
    def from_clip(cls, clip, adapter=None, frames=None, backbone_source=None, precision: str = "fp32",
                  cache=None, runtime: str = "torch", calibrate_on: str | Path | None = None,
                  calibration_videos: int | None = None) -> VideoEncoder:
        """The encoder of ``clip`` (from ``resolve_backbone``) with ``adapter`` or zero-shot, run by
        ``runtime`` at ``precision``; OpenVINO int8 is calibrated on the first ``calibration_videos``
        videos of the collection ``calibrate_on`` (the one being indexed)."""
        encoder = cls(clip, build_video_model(clip, adapter, frames), backbone_source, adapter, cache=cache)
        calibration = None
        if runtime == "openvino" and precision == "int8" and calibrate_on is not None:
            # without a collection (vop search / serve) only the text graph runs, which needs no calibration
            from vop.runtime.calibration import DEFAULT_VIDEOS, from_collection

            calibration = from_collection(calibrate_on, encoder.frames, encoder.image_size,
                                          calibration_videos or DEFAULT_VIDEOS, cache)
        encoder.set_runtime(runtime, precision, calibration)
        return encoder

    def set_runtime(self, runtime: str, precision: str, calibration=None) -> None:
        """Run the model with ``runtime`` ("torch" | "openvino") at ``precision`` (``vop.runtime.prepare``).

        torch int8 quantizes the backbone in place (shared with every encoder built on it), so a
        server builds all its encoders first and then sets the runtime.
        """
        from vop.runtime import precision_of, prepare

        self.model = prepare(self.torch_model, runtime, precision, calibration=calibration)
        self.runtime, self.precision, self.calibration = runtime, precision_of(self.model), calibration

    def set_precision(self, precision: str) -> None:
        """:meth:`set_runtime` with the current runtime."""
        self.set_runtime(self.runtime, precision, self.calibration)

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
            "backbone": self.backbone,
            "method": str(getattr(self.model, "method", "zeroshot")),
            "frames": self.frames,
            "image_size": self.image_size,
            "dim": self.dim,
            "adapter_name": None if self.adapter_dir is None else self.adapter_dir.name,
            "adapter_path": None if self.adapter_dir is None else str(self.adapter_dir),
            "adapter_sha256": self._adapter_sha,
            # recorded, not compared: vectors of every runtime and precision are comparable (vop.runtime)
            "runtime": self.runtime,
            "precision": self.precision,
            "calibration": None if self.calibration is None else self.calibration.describe(),
        }

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """``N`` strings -> float32 ``[N, dim]`` unit vectors."""
        from vop.backbone.tokenizer import tokenize

        tokens = tokenize(list(texts), context_length=self.model.context_length, truncate=True)
        return _unit(self.model.encode_text(tokens))

    def decoder(self) -> VideoDecoder:
        """What decoding needs, without the model (a Ray decode task is sent only this)."""
        return VideoDecoder(self.frames, self.image_size, self.cache)

    def decode(self, path: str | Path) -> tuple:
        """:meth:`VideoDecoder.decode` with this encoder's frames, image size and cache."""
        return self.decoder().decode(path)

    def prepare(self, decoded: tuple) -> PreparedVideo:
        """:meth:`VideoDecoder.prepare` with this encoder's image size."""
        return self.decoder().prepare(decoded)

    @torch.no_grad()
    def encode_prepared(self, prepared: PreparedVideo) -> EncodedVideo:
        """Run the model on one prepared video (``[F, 3, S, S]``) -> its unit vector and metadata."""
        info = prepared.info
        vector = _unit(self.model.encode_video(prepared.video[None]))[0]  # [1, F, 3, S, S] -> [E]
        return EncodedVideo(vector, info.duration, info.num_frames, info.width, info.height, prepared.thumbnail,
                            getattr(info, "warning", None), prepared.from_cache)

    def encode_decoded(self, decoded: tuple) -> EncodedVideo:
        """:meth:`prepare` then :meth:`encode_prepared` (the Ray engine's actors: frames travel as uint8)."""
        return self.encode_prepared(self.prepare(decoded))

    def encode_file(self, path: str | Path) -> EncodedVideo:
        """Decode and encode one video file; raises ``DecodeError``."""
        return self.encode_decoded(self.decode(path))


def _unit(x: torch.Tensor) -> np.ndarray:
    """The model's unit vectors as float32 numpy (``vop.model`` normalises; normalising again
    could change the last bit and make index vectors differ from ``vop eval``'s)."""
    return x.float().cpu().numpy()


def make_thumbnail(frame: np.ndarray, size: int = THUMB_SIZE) -> bytes:
    """uint8 ``[H, W, 3]`` -> JPEG bytes, longest side ``size``."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(frame))
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return buf.getvalue()
