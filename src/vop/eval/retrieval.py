"""Text-video retrieval evaluation: encode once, rank in chunks, report t2v and v2t.

Protocols, decided from the records (``VideoRecord.captions``):

* every caption of a record is a text query whose one correct video is the record's video
  (MSR-VTT 1k-A has one caption per test video; MSVD's multi-caption test has ~40);
* video-to-text: a video query is correct at the best rank of *any* of its captions;
* paragraph benchmarks (DiDeMo, ActivityNet) arrive with the sentences of a video already
  joined into one caption by the data readers, so they are the one-caption case.

``captions="first"`` keeps only the first caption of each record (some papers' MSVD variant).
Videos that cannot be decoded are skipped with their queries and counted in the result
(``videos_skipped``), never zero-filled.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from vop.eval.metrics import chunked_ranks, dsl_column_logsumexp, dsl_rescorer, summarize_ranks


@dataclass
class QuerySet:
    texts: list[str]
    text_to_video: list[int]           # the correct video (record index) of each text query
    video_to_texts: list[list[int]]    # the correct texts of each video query


def build_queries(records, captions: str = "all") -> QuerySet:
    if captions not in ("all", "first"):
        raise ValueError(f"captions must be 'all' or 'first', got {captions!r}")
    texts, t2v, v2t = [], [], []
    for vi, rec in enumerate(records):
        caps = list(rec.captions) if captions == "all" else list(rec.captions[:1])
        if not caps:
            raise ValueError(f"video {rec.video_id!r} has no caption to use as a query")
        v2t.append(list(range(len(texts), len(texts) + len(caps))))
        texts.extend(caps)
        t2v.extend([vi] * len(caps))
    return QuerySet(texts, t2v, v2t)


def autocast_for(device: torch.device, precision: str = "auto"):
    """bf16 autocast on CUDA (or when asked), plain fp32 elsewhere (CPUs here lack bf16 units)."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if use_bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def encode_texts(model, texts: list[str], batch_size: int, device, precision: str = "auto",
                 progress: bool = True) -> torch.Tensor:
    """Texts -> ``[N, E]`` embeddings, tokenized to ``model.context_length``."""
    from tqdm import tqdm

    from vop.backbone.tokenizer import tokenize

    out = []
    for s in tqdm(range(0, len(texts), batch_size), desc="encode text", disable=not progress, leave=False):
        tokens = tokenize(texts[s:s + batch_size], context_length=model.context_length).to(device)
        with autocast_for(device, precision):
            out.append(model.encode_text(tokens).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


@torch.no_grad()
def encode_videos(model, records, image_size: int, batch_size: int, device, cache=None,
                  on_error: str = "skip", num_workers: int = 0, precision: str = "auto",
                  progress: bool = True) -> tuple[torch.Tensor, list[int]]:
    """``[V_ok, E]`` embeddings and the record indices they belong to (undecodable ones left out).

    Videos go through ``vop.data``'s one path (``VideoDataset`` -> ``load_video``, ``make_loader``),
    the same frames and pixels ``vop index`` encodes."""
    from tqdm import tqdm

    from vop.data.dataset import VideoDataset, make_loader

    ds = VideoDataset(records, frames=model.frames, image_size=image_size, cache=cache, on_error=on_error)
    loader = make_loader(ds, batch_size, num_workers=num_workers)
    embs, kept = [], []
    for batch in tqdm(loader, desc="encode video", disable=not progress, leave=False):
        with autocast_for(device, precision):
            embs.append(model.encode_video(batch["video"].to(device)).float().cpu())
        kept.extend(int(i) for i in batch["video_index"])
    return (torch.cat(embs) if embs else torch.zeros(0, 0)), kept


def metrics_from_embeddings(text_emb: torch.Tensor, video_emb: torch.Tensor, queries: QuerySet,
                            tie: str = "pessimistic", dsl: bool = False, chunk: int = 0,
                            dsl_temperature: float = 100.0) -> dict:
    """t2v and v2t metrics (and DSL ones under a separate key) from L2-normalised embeddings."""
    t2v_pos = [[v] for v in queries.text_to_video]
    result = {
        "t2v": summarize_ranks(chunked_ranks(text_emb, video_emb, t2v_pos, tie, chunk or None)),
        "v2t": summarize_ranks(chunked_ranks(video_emb, text_emb, queries.video_to_texts, tie, chunk or None)),
    }
    if dsl:
        lse_videos = dsl_column_logsumexp(text_emb, video_emb, dsl_temperature, chunk or None)
        lse_texts = dsl_column_logsumexp(video_emb, text_emb, dsl_temperature, chunk or None)
        result["dsl"] = {
            "t2v": summarize_ranks(chunked_ranks(text_emb, video_emb, t2v_pos, tie, chunk or None,
                                                 dsl_rescorer(lse_videos, dsl_temperature))),
            "v2t": summarize_ranks(chunked_ranks(video_emb, text_emb, queries.video_to_texts, tie,
                                                 chunk or None, dsl_rescorer(lse_texts, dsl_temperature))),
            "temperature": dsl_temperature,
        }
    return result


def _restrict(queries: QuerySet, kept: list[int]) -> QuerySet:
    """Drop the videos that could not be decoded, and their text queries; renumber the rest."""
    new_index = {old: new for new, old in enumerate(kept)}
    keep_texts = [t for t, v in enumerate(queries.text_to_video) if v in new_index]
    text_new = {old: new for new, old in enumerate(keep_texts)}
    return QuerySet(
        texts=[queries.texts[t] for t in keep_texts],
        text_to_video=[new_index[queries.text_to_video[t]] for t in keep_texts],
        video_to_texts=[[text_new[t] for t in queries.video_to_texts[v]] for v in kept],
    )


def _backbone_image_size(model, asked: int | None) -> int:
    """The backbone's image size (its positional embeddings fix it); ``asked`` may only repeat it."""
    size = model.clip.cfg.vision.image_size
    if asked is not None and asked != size:
        raise ValueError(f"image_size {asked} is not the backbone's ({model.clip.cfg.name}: {size} px)")
    return size


def evaluate(model, records, *, image_size: int | None = None, batch_size: int = 32, cache=None,
             tie: str = "pessimistic", dsl: bool = False, chunk: int = 0, captions: str = "all",
             device: str | torch.device = "cpu", precision: str = "auto",
             on_error: str = "skip", num_workers: int = 0, dsl_temperature: float = 100.0,
             progress: bool = True) -> dict:
    """Model + records -> ``{"t2v": {...}, "v2t": {...}[, "dsl": {...}], "videos": ..., ...}``.

    Captions are tokenized to ``model.context_length`` (decided when the model was built); frames
    are prepared at the backbone's image size (``image_size`` may only repeat it).
    """
    image_size = _backbone_image_size(model, image_size)
    device = torch.device(device)
    was_training = model.training
    model.eval()
    try:
        queries = build_queries(records, captions)
        video_emb, kept = encode_videos(model, records, image_size, batch_size, device, cache, on_error,
                                        num_workers, precision, progress)
        if not kept:
            raise ValueError(f"none of the {len(records)} videos could be decoded; nothing to evaluate")
        order = np.argsort(kept, kind="stable")
        kept = [kept[i] for i in order]
        video_emb = video_emb[torch.from_numpy(order)]
        queries = _restrict(queries, kept)
        text_emb = encode_texts(model, queries.texts, batch_size, device, precision, progress)
        result = metrics_from_embeddings(text_emb, video_emb, queries, tie, dsl, chunk, dsl_temperature)
    finally:
        model.train(was_training)
    result.update(videos=len(kept), texts=len(queries.texts), videos_skipped=len(records) - len(kept), tie=tie)
    return result


def format_table(result: dict) -> str:
    """The paper-style table: one row per direction, DSL rows separate and labelled."""
    cols = ["R@1", "R@5", "R@10", "MdR", "MnR"]
    lines = [f"{'':<10}" + "".join(f"{c:>8}" for c in cols)]
    rows = [("t2v", result["t2v"]), ("v2t", result["v2t"])]
    if "dsl" in result:
        rows += [("t2v+DSL", result["dsl"]["t2v"]), ("v2t+DSL", result["dsl"]["v2t"])]
    for label, m in rows:
        lines.append(f"{label:<10}" + "".join(f"{m[c]:>8.1f}" for c in cols))
    lines.append(f"{result['videos']} videos, {result['texts']} text queries, ties {result['tie']}"
                 + (f", {result['videos_skipped']} undecodable videos SKIPPED" if result["videos_skipped"] else ""))
    if "dsl" in result:
        lines.append("DSL rows use the statistics of all test queries (not available in deployment).")
    return "\n".join(lines)
