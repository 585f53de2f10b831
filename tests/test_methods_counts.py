"""Exact trainable-parameter counts (the README's methods table) on ViT-B/32 with F = 12 (construction only)."""

import pytest

from vop.backbone.clip import build_clip
from vop.model import build_model

EXACT = {
    "zeroshot": 0,
    "text-prompt": 8 * 512 * 12,  # 49,152
    "visual-prompt": 8 * 768 * 12,  # 73,728
    "vop": 122_880,
    "vop-p": 528_384,  # (4 shared + 4 x 12 positions) x 768 x 12 + text
    "proj": 768 * 512 + 512 * 512,  # 655,360
}


@pytest.fixture(scope="module")
def vitb32():
    return build_clip("ViT-B-32", seed=0)


@pytest.mark.parametrize("method,count", list(EXACT.items()))
def test_exact_counts(vitb32, method, count):
    assert build_model(vitb32, method, frames=12).parameter_budget()["trainable"] == count


@pytest.mark.parametrize("method,count", [("vop-fp", 393_216), ("vop-f", 122_880)])
def test_frame_methods_count_the_frame_position_on_its_own(vitb32, method, count):
    m = build_model(vitb32, method, frames=12)
    breakdown = m.parameter_breakdown()
    assert breakdown["frame_pos"] == 12 * 768
    assert m.parameter_budget()["trainable"] - breakdown["frame_pos"] == count
    assert [c.get("shallow_layers") for c in m.method_config["components"]] == [None, 8, 8]  # K^s = 8


@pytest.mark.parametrize("method,paper", [("vop-c", 14.3e6), ("vop-fc", 14.1e6)])
def test_context_methods_near_paper(vitb32, method, paper):
    n = build_model(vitb32, method, frames=12).parameter_budget()["trainable"]
    assert abs(n - paper) / paper < 0.02


def test_full_is_everything_but_the_logit_scale(vitb32):
    b = build_model(vitb32, "full", frames=12).parameter_budget()
    assert b["trainable"] == 151_277_313 - 1 and b["total"] == 151_277_313
    assert not any(p.requires_grad for p in vitb32.parameters())  # the shared backbone stays frozen


def test_budget_line(vitb32):
    line = build_model(vitb32, "vop", frames=12).budget_line()
    assert line == "trainable params: 122,880 || all params: 151,400,193 || trainable%: 0.0812"
