"""Hugging Face ``CLIPModel`` folders: ``config.json`` -> our :class:`~vop.backbone.clip.CLIPConfig`,
HF key names -> OpenAI's (q/k/v joined into one ``in_proj``, projections transposed), and back.

A folder holds ``config.json`` and ``model.safetensors``, a sharded ``model.safetensors.index.json``
or ``pytorch_model.bin``; the tensors are read by the plain readers of this package. No import of
``transformers``: the mapping is ours and is tested against it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vop.backbone.clip import CONFIGS, CLIPConfig, TextCfg, VisionCfg
from vop.backbone.formats.errors import CheckpointError
from vop.backbone.formats.safetensors import read_safetensors
from vop.backbone.formats.state_dict import torch_load_weights

# Defaults of transformers' CLIPTextConfig / CLIPVisionConfig for keys a config.json may omit.
HF_TEXT_DEFAULTS = {
    "hidden_size": 512,
    "intermediate_size": 2048,
    "num_hidden_layers": 12,
    "num_attention_heads": 8,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
HF_VISION_DEFAULTS = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "image_size": 224,
    "patch_size": 32,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
HF_ACTIVATIONS = {"quick_gelu": True, "gelu": False}  # act name -> CLIPConfig.quick_gelu

# HF module names -> ours, applied to the part of a key after the encoder prefix.
HF_BLOCK_RENAMES = {
    "self_attn.out_proj.": "attn.out_proj.",
    "layer_norm1.": "ln_1.",
    "layer_norm2.": "ln_2.",
    "mlp.fc1.": "mlp.c_fc.",
    "mlp.fc2.": "mlp.c_proj.",
}
HF_RENAMES = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
    "vision_model.embeddings.class_embedding": "visual.class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
    "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",  # sic: HF's spelling
    "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
    "vision_model.post_layernorm.weight": "visual.ln_post.weight",
    "vision_model.post_layernorm.bias": "visual.ln_post.bias",
    "logit_scale": "logit_scale",
}
HF_TRANSPOSED = {"text_projection.weight": "text_projection", "visual_projection.weight": "visual.proj"}
HF_QKV = {"self_attn.q_proj": "q", "self_attn.k_proj": "k", "self_attn.v_proj": "v"}
HF_ENCODERS = {
    "text_model.encoder.layers.": "transformer.resblocks.",
    "vision_model.encoder.layers.": "visual.transformer.resblocks.",
}
HF_BUFFERS = ("text_model.embeddings.position_ids", "vision_model.embeddings.position_ids")


def read_hf_dir(path: Path) -> tuple[dict[str, torch.Tensor], CLIPConfig]:
    """A Hugging Face CLIPModel folder -> (OpenAI-layout state dict, its config)."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(
            f"{path}: a directory source must be a Hugging Face CLIPModel folder with config.json"
        )
    from vop.limits import read_json_object

    hf_config = read_json_object(config_file, CheckpointError)
    cfg = config_from_hf(hf_config, name=path.name, origin=str(config_file))
    return hf_to_openai(_read_hf_weights(path)), cfg


def _shard_names(index: Path) -> list[str]:
    """The shard files ``model.safetensors.index.json`` names: plain file names in its folder."""
    from vop.limits import read_json_object

    weight_map = read_json_object(index, CheckpointError).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index}: no 'weight_map' object (tensor name -> shard file)")
    shards = set(weight_map.values())
    for shard in shards:
        if not (isinstance(shard, str) and shard.endswith(".safetensors") and "/" not in shard
                and "\\" not in shard and shard not in (".", "..")):
            raise CheckpointError(f"{index}: weight_map names {str(shard)[:80]!r}; expected a .safetensors "
                                  f"file name in the same folder")
    return sorted(shards)


def _read_hf_weights(path: Path) -> dict[str, torch.Tensor]:
    if (path / "model.safetensors").is_file():
        return read_safetensors(path / "model.safetensors")
    index = path / "model.safetensors.index.json"
    if index.is_file():  # sharded checkpoint: one file per group of tensors
        return {k: v for shard in _shard_names(index) for k, v in read_safetensors(path / shard).items()}
    if (path / "pytorch_model.bin").is_file():
        return torch_load_weights(path / "pytorch_model.bin")
    raise CheckpointError(f"{path}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


def config_from_hf(hf_config: dict, name: str, origin: str) -> CLIPConfig:
    """Our CLIPConfig from a Hugging Face ``CLIPModel`` config.json (dict).

    Named after the matching built-in config when the architecture is one (so a converted
    OpenAI ViT-B/32 is called ``ViT-B-32``), otherwise after the folder.
    """
    if hf_config.get("model_type") not in (None, "clip"):
        raise CheckpointError(f"{origin}: model_type {str(hf_config['model_type'])[:40]!r} is not 'clip'")
    for label in ("text_config", "vision_config"):
        if not isinstance(hf_config.get(label, {}), dict):
            raise CheckpointError(f"{origin}: {label} must be an object")
    text = {**HF_TEXT_DEFAULTS, **hf_config.get("text_config", {})}
    vision = {**HF_VISION_DEFAULTS, **hf_config.get("vision_config", {})}
    for label, sub in (("text_config", text), ("vision_config", vision)):
        for key, default in (HF_TEXT_DEFAULTS if label == "text_config" else HF_VISION_DEFAULTS).items():
            if type(sub[key]) is not type(default):  # JSON types: a width "768" or true is refused here
                raise CheckpointError(f"{origin}: {label}.{key} is {str(sub[key])[:40]!r}; expected a "
                                      f"{type(default).__name__}")
        if sub["intermediate_size"] != 4 * sub["hidden_size"]:
            raise CheckpointError(f"{origin}: {label}.intermediate_size must be 4 x hidden_size for CLIP")
        if sub["hidden_act"] not in HF_ACTIVATIONS:
            raise CheckpointError(
                f"{origin}: {label}.hidden_act {sub['hidden_act']!r} is not one of {list(HF_ACTIVATIONS)}"
            )
        if abs(sub["layer_norm_eps"] - 1e-5) > 1e-12:
            raise CheckpointError(
                f"{origin}: {label}.layer_norm_eps {sub['layer_norm_eps']} is not CLIP's 1e-5"
            )
    if text["hidden_act"] != vision["hidden_act"]:
        raise CheckpointError(f"{origin}: text and vision use different activations; CLIP uses one")
    cfg = CLIPConfig(
        name=name,
        embed_dim=hf_config.get("projection_dim", 512),
        vision=VisionCfg(
            vision["hidden_size"],
            vision["num_hidden_layers"],
            vision["num_attention_heads"],
            vision["patch_size"],
            vision["image_size"],
        ),
        text=TextCfg(
            text["hidden_size"],
            text["num_hidden_layers"],
            text["num_attention_heads"],
            text["max_position_embeddings"],
            text["vocab_size"],
        ),
        quick_gelu=HF_ACTIVATIONS[text["hidden_act"]],
    )
    try:  # sizes checked before anything is built
        cfg.validate()
    except ValueError as err:
        raise CheckpointError(f"{origin}: {_hf_names(str(err))}") from None
    for known in CONFIGS.values():
        if {**known.to_dict(), "name": name} == cfg.to_dict():
            return known
    return cfg


def _hf_names(message: str) -> str:
    """A :meth:`CLIPConfig.validate` message in config.json's own key names."""
    for ours, theirs in (("vision.", "vision_config."), ("text.", "text_config."), (".width", ".hidden_size"),
                         (".layers", ".num_hidden_layers"), (".heads", ".num_attention_heads"),
                         (".context_length", ".max_position_embeddings"), ("embed_dim", "projection_dim")):
        message = message.replace(ours, theirs)
    return message


def config_to_hf(cfg: CLIPConfig) -> dict:
    """The inverse of :func:`config_from_hf`: the ``text_config`` / ``vision_config`` /
    ``projection_dim`` entries of a Hugging Face CLIP config.json for ``cfg`` (a plain dict, no
    transformers import); ``transformers.CLIPConfig(**config_to_hf(cfg))`` builds the same model."""
    act = "quick_gelu" if cfg.quick_gelu else "gelu"
    v, t = cfg.vision, cfg.text
    return {
        "text_config": {
            "hidden_size": t.width,
            "intermediate_size": 4 * t.width,
            "num_hidden_layers": t.layers,
            "num_attention_heads": t.heads,
            "max_position_embeddings": t.context_length,
            "vocab_size": t.vocab_size,
            "hidden_act": act,
        },
        "vision_config": {
            "hidden_size": v.width,
            "intermediate_size": 4 * v.width,
            "num_hidden_layers": v.layers,
            "num_attention_heads": v.heads,
            "patch_size": v.patch_size,
            "image_size": v.image_size,
            "hidden_act": act,
        },
        "projection_dim": cfg.embed_dim,
    }


def hf_to_openai(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face CLIPModel state dict into OpenAI layout.

    HF keeps separate ``q/k/v_proj`` linears; ours (like ``nn.MultiheadAttention``) holds one
    ``in_proj`` of shape ``[3D, D]`` with rows q, k, v. HF projections are ``nn.Linear``
    (``[E, D]``); OpenAI's are matrices applied as ``x @ proj`` (``[D, E]``), hence the transpose.
    Keys this mapping does not know are kept as they are, so the strict check reports them.
    """
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}  # "<block prefix>|weight" -> {"q": ..., "k": ..., "v": ...}
    for key, tensor in hf_state.items():
        if key in HF_BUFFERS:
            continue
        if key in HF_RENAMES:
            out[HF_RENAMES[key]] = tensor
        elif key in HF_TRANSPOSED:
            out[HF_TRANSPOSED[key]] = tensor.t().contiguous()  # [E, D] -> [D, E]
        elif (block := _hf_block_key(key)) is not None:
            prefix, rest = block
            module, param = rest.rsplit(".", 1)  # "self_attn.q_proj", "weight"
            if module in HF_QKV:
                qkv.setdefault(f"{prefix}attn.in_proj_{param}", {})[HF_QKV[module]] = tensor
            else:
                for hf_name, ours in HF_BLOCK_RENAMES.items():
                    if rest.startswith(hf_name):
                        rest = ours + rest[len(hf_name) :]
                        break
                out[prefix + rest] = tensor
        else:
            out[key] = tensor
    for name, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(
                f"Hugging Face state dict: {name} needs q, k and v projections, found {sorted(parts)}"
            )
        out[name] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)  # [3D, D] or [3D]
    return out


def _hf_block_key(key: str) -> tuple[str, str] | None:
    """``text_model.encoder.layers.3.mlp.fc1.bias`` -> (``transformer.resblocks.3.``, ``mlp.fc1.bias``)."""
    for hf_prefix, ours in HF_ENCODERS.items():
        if key.startswith(hf_prefix):
            index, rest = key[len(hf_prefix) :].split(".", 1)
            return f"{ours}{index}.", rest
    return None
