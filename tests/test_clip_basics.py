import torch

from vop.backbone.clip import CONFIGS, build_clip, get_config


def test_vit_b32_parameter_count_matches_openai():
    # OpenAI's ViT-B/32 has 151,277,313 parameters (logit_scale included).
    model = build_clip("ViT-B-32")
    assert sum(p.numel() for p in model.parameters()) == 151_277_313


def test_frozen_by_default_and_seeded(tiny_clip):
    assert not any(p.requires_grad for p in tiny_clip.parameters())
    assert not tiny_clip.training
    again = build_clip("tiny", seed=0)
    assert tiny_clip.weights_sha256 == again.weights_sha256
    assert build_clip("tiny", seed=1).weights_sha256 != again.weights_sha256


def test_encoders_shapes(tiny_clip):
    cfg = tiny_clip.cfg
    img = torch.randn(3, 3, cfg.vision.image_size, cfg.vision.image_size)
    tok = torch.zeros(2, 77, dtype=torch.long)
    tok[:, 0], tok[:, 1], tok[:, 2] = 49406, 320, 49407
    assert tiny_clip.encode_image(img).shape == (3, cfg.embed_dim)
    assert tiny_clip.encode_text(tok).shape == (2, cfg.embed_dim)


def test_unknown_config_lists_known_names():
    try:
        get_config("ViT-X-99")
    except KeyError as e:
        assert "ViT-B-32" in str(e)
    else:  # pragma: no cover
        raise AssertionError("expected KeyError")
    assert "tiny" in CONFIGS
