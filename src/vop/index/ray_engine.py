"""``vop index --engine ray``: decoding as Ray tasks, encoding in a Ray actor pool (Ray Data).

Ray Data does the scheduling, streaming and retries; vop adds no scheduler of its own:

* the driver lists the videos to encode (the same incremental plan as the plain path) and
  writes every returned row into the same Parquet parts (:class:`vop.index.shards.PartWriter`),
  so a killed driver loses only the part it had not finished, and a rerun encodes only what no
  finished part holds;
* ``map(decode)``: one CPU task per video, the model-free :class:`~vop.index.encoder.VideoDecoder`
  (the same decoding as the plain path), retried when its worker dies;
* ``map_batches(Encode)``: an actor pool, each actor holding one copy of the encoder (sent once
  through the object store); each video is encoded alone, exactly as the plain path does, so the
  vectors are the same. A killed actor is restarted and its batch retried;
* ``--gpus-per-worker``: actors ask Ray for GPUs and run the model on CUDA under bf16 autocast;
* rows reach the driver once per video: a row seen twice (a retried batch whose first result
  also arrived) is written once.

No address: a local Ray on this machine (started here and shut down at the end);
``address="auto"`` or ``"ray://HOST:PORT"`` joins a running cluster, whose nodes need vop
installed and the videos at the same path (or an fsspec URI every node can read).
"""

from __future__ import annotations

import logging
import os
import types

import numpy as np

log = logging.getLogger("vop.index")
DEFAULT_BATCH = 4  # videos per actor call (each still encoded alone)
DECODE_RETRIES = 3
BLOCK_VIDEOS = 4  # videos per decode task: small blocks keep decoding and encoding overlapped
MAX_BLOCKS = 20_000  # ... but at most this many tasks (1M videos: 50 per task)


def _decode_row(row: dict, root: str, local: str | None, decoder) -> dict:
    """One video -> its decoded frames as bytes (+ shape) and probe info, or the reason it failed."""
    from pathlib import Path

    from vop.data.decode import DecodeError
    from vop.index.build import BAD_NAME
    from vop.index.discover import Collection

    out = dict(row, error=None, frames=b"", frames_shape=[0, 0, 0, 0], thumb=b"", thumb_shape=[0, 0, 0],
               duration=float("nan"), num_frames=0, width=0, height=0, warning=None, from_cache=False)
    if row["bad_name"]:
        out["error"] = BAD_NAME
        return out
    collection = Collection(root, [], None if local is None else Path(local))
    try:
        with collection.source(row["relpath"]) as path:
            frames, info, thumb, from_cache = decoder.decode(path)
    except DecodeError as err:
        out["error"] = err.reason
        return out
    frames, thumb = np.ascontiguousarray(frames), np.ascontiguousarray(thumb)
    out.update(frames=frames.tobytes(), frames_shape=list(frames.shape), thumb=thumb.tobytes(),
               thumb_shape=list(thumb.shape),
               duration=float("nan") if info.duration is None else info.duration,
               num_frames=int(info.num_frames), width=int(info.width), height=int(info.height),
               warning=getattr(info, "warning", None), from_cache=bool(from_cache))
    return out


class Encode:
    """A Ray actor: one encoder (from the object store), videos encoded one at a time."""

    def __init__(self, encoder_ref: list, gpus: float, threads: int | None):
        import ray
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.encoder = ray.get(encoder_ref[0])
        if gpus:
            _on_gpu(self.encoder)

    def __call__(self, batch: dict) -> dict:
        n = len(batch["relpath"])
        vectors, thumbs, errors = [], [], [_text(e) for e in batch["error"]]
        for i in range(n):
            if errors[i] is not None:
                vectors.append(b"")
                thumbs.append(b"")
                continue
            frames = np.frombuffer(batch["frames"][i], np.uint8)
            frames = frames.reshape(batch["frames_shape"][i])  # bytes -> [F, H, W, 3]
            thumb = np.frombuffer(batch["thumb"][i], np.uint8)
            thumb = thumb.reshape(batch["thumb_shape"][i])  # bytes -> [H, W, 3]
            duration = float(batch["duration"][i])
            info = types.SimpleNamespace(duration=None if np.isnan(duration) else duration,
                                         num_frames=int(batch["num_frames"][i]), width=int(batch["width"][i]),
                                         height=int(batch["height"][i]), warning=_text(batch["warning"][i]))
            enc = self.encoder.encode_decoded((frames, info, thumb, bool(batch["from_cache"][i])))
            vectors.append(np.asarray(enc.vector, np.float32).tobytes())
            thumbs.append(enc.thumbnail)
        keep = ("relpath", "size", "mtime_ns", "file_id", "bad_name", "duration", "num_frames", "width",
                "height", "warning", "from_cache", "error")
        return {**{k: batch[k] for k in keep}, "vector": np.array(vectors, dtype=object),
                "thumbnail": np.array(thumbs, dtype=object), "pid": np.full(n, os.getpid())}


def _text(value) -> str | None:
    """A string column's value: Ray hands an all-None column over as floats (NaN)."""
    return value if isinstance(value, str) else None


def _on_gpu(encoder) -> None:
    """Run the encoder's model on CUDA under bf16 autocast (inputs moved there, outputs back as float)."""
    import torch

    model = encoder.model.to("cuda")
    plain = model.encode_video

    def encode_video(video):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return plain(video.to("cuda", non_blocking=True)).float()

    model.encode_video = encode_video


def plan_cpus(workers: int, wanted: float, total: float) -> tuple[float, float]:
    """CPUs (per encoder actor, per decode task) to ask Ray for: the actors get ``wanted`` each,
    but never so many that they hold every CPU and no decode task can run (a deadlock)."""
    decode = 1.0 if total >= 2 else total / 2
    return min(wanted, max(0.1, (total - decode) / workers)), decode


def connect(address: str | None, num_cpus: int | None = None) -> bool:
    """Join ``address`` or start a local Ray (unless this process already joined one); True when
    this call started it (the caller then shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, **kwargs)
    return True


def encode_with_ray(collection, todo, encoder, writer, report, progress: bool, after_each,
                    options: dict) -> None:
    """Encode ``todo`` on Ray and hand every row to ``writer`` (see the module doc)."""
    if not todo:
        return
    try:
        import ray
        import ray.data
    except ImportError:
        raise ValueError("--engine ray needs Ray Data: pip install 'vop[ray]'") from None
    from tqdm.auto import tqdm

    from vop.index.build import count, video_row
    from vop.index.discover import VideoFile

    started = connect(options.get("address"), options.get("num_cpus"))
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # vop shows its own bar, as the plain path does
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        gpus = float(options.get("gpus_per_worker") or 0)
        if gpus and getattr(encoder, "runtime", "torch") != "torch":
            raise ValueError("--gpus-per-worker runs the torch model on CUDA: use it with --runtime torch")
        workers = int(options.get("workers") or 1)
        cpus, decode_cpus = plan_cpus(workers, float(options.get("cpus_per_worker") or 1),
                                      ray.cluster_resources().get("CPU", 1))
        items = [{"relpath": f.relpath, "size": f.size, "mtime_ns": f.mtime_ns, "file_id": f.file_id,
                  "bad_name": f.bad_name} for f in todo]
        local = None if collection.local is None else str(collection.local)
        encoder_ref = ray.put(encoder)
        blocks = min(len(items), max(1, len(items) // BLOCK_VIDEOS), MAX_BLOCKS)
        ds = ray.data.from_items(items, override_num_blocks=blocks)
        decode_args = {"root": collection.root, "local": local, "decoder": encoder.decoder()}
        ds = ds.map(_decode_row, fn_kwargs=decode_args,
                    num_cpus=decode_cpus, max_retries=DECODE_RETRIES)
        ds = ds.map_batches(
            Encode,
            fn_constructor_args=([encoder_ref], gpus, options.get("threads")),
            batch_size=int(options.get("batch_size") or DEFAULT_BATCH),
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=cpus,
            num_gpus=gpus,
            max_restarts=-1,
            max_task_retries=-1,
        )
        wanted = {f.relpath for f in todo}
        seen: set[str] = set()
        bar = tqdm(total=len(todo), desc="indexing (ray)", unit="video", disable=not progress)
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for i, relpath in enumerate(batch["relpath"]):
                relpath = str(relpath)
                if relpath in seen or relpath not in wanted:
                    continue  # a retried batch's second result: each video is written once
                seen.add(relpath)
                f = VideoFile(relpath, int(batch["size"][i]), int(batch["mtime_ns"][i]),
                              _text(batch["file_id"][i]), bool(batch["bad_name"][i]))
                if _text(batch["error"][i]) is not None:
                    row, enc = video_row(f, error=_text(batch["error"][i])), None
                else:
                    duration = float(batch["duration"][i])
                    enc = types.SimpleNamespace(
                        vector=np.frombuffer(batch["vector"][i], np.float32),
                        thumbnail=bytes(batch["thumbnail"][i]),
                        duration=None if np.isnan(duration) else duration,
                        num_frames=int(batch["num_frames"][i]), width=int(batch["width"][i]),
                        height=int(batch["height"][i]), warning=_text(batch["warning"][i]),
                        from_cache=bool(batch["from_cache"][i]))
                    row = video_row(f, enc)
                count(report, row, enc)
                writer.add(row)
                bar.update()
                if after_each is not None:
                    after_each(len(seen))
        bar.close()
        lost = wanted - seen
        if lost:
            raise RuntimeError(f"the Ray run returned no row for {len(lost)} videos "
                               f"(e.g. {min(lost)}); "
                               f"every finished part is kept: run again to encode them")
    finally:
        if started:
            ray.shutdown()
