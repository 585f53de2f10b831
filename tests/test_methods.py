"""Methods on the tiny CLIP: prompted passes equal plain CLIP without prompts, gradients reach
exactly the trainable tensors, temporal methods see frame order and mean-pooled ones don't."""

import pytest
import torch
import torch.nn.functional as F

from vop.backbone import prompted
from vop.model import METHODS, build_model, resolve_method

FRAMES = 4
DEEP = {"shallow_layers": 1}  # the tiny CLIP has 2 vision layers: 1 per-frame + 1 inter-frame


def tokens(n=3):
    t = torch.zeros(n, 77, dtype=torch.long)
    for i in range(n):
        words = [320 + i, 1000 + 7 * i, 2000 + i][: i + 1]
        t[i, 0], t[i, 1:1 + len(words)], t[i, 1 + len(words)] = 49406, torch.tensor(words), 49407
    return t


def video(b=2, f=FRAMES, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, f, 3, 32, 32, generator=g)


def build(clip, method, **kw):
    overrides = DEEP if method in ("vop-f", "vop-fp", "vop-fc") else None
    return build_model(clip, method, frames=FRAMES, overrides=overrides, seed=0, **kw)


def test_zero_length_prompts_equal_plain_clip(tiny_clip):
    model = build_model(tiny_clip, "vop", frames=FRAMES, overrides={"text_length": 0, "visual_length": 0})
    tok, vid = tokens(), video()
    assert torch.equal(prompted.encode_text(tiny_clip, tok, model.prompts["text"].prompts),
                       tiny_clip.encode_text(tok))
    per_frame = prompted.encode_frames(tiny_clip, vid, model.prompts["visual"])
    plain = tiny_clip.encode_image(vid.flatten(0, 1)).view(2, FRAMES, -1)  # [B, F, E]
    assert torch.equal(per_frame, plain)


def test_zeroshot_embeddings_are_normalised_mean_of_clip_frames(tiny_clip):
    model = build(tiny_clip, "zeroshot")
    vid, tok = video(), tokens()
    frames = F.normalize(tiny_clip.encode_image(vid.flatten(0, 1)).view(2, FRAMES, -1), dim=-1)
    assert torch.allclose(model.encode_video(vid), F.normalize(frames.mean(1), dim=-1), atol=1e-6)
    assert torch.allclose(model.encode_text(tok), F.normalize(tiny_clip.encode_text(tok), dim=-1), atol=1e-6)
    sim = model.similarity(model.encode_text(tok), model.encode_video(vid))
    assert sim.shape == (3, 2) and sim.abs().max() <= 1 + 1e-6
    assert model.logit_scale().item() == pytest.approx(1 / 0.07, rel=1e-5)


def test_prompts_change_the_output(tiny_clip):
    model = build(tiny_clip, "vop")
    z = build(tiny_clip, "zeroshot")
    assert not torch.allclose(model.encode_text(tokens()), z.encode_text(tokens()))
    assert not torch.allclose(model.encode_video(video()), z.encode_video(video()))


def test_text_prompts_do_not_depend_on_padding_length(tiny_clip):
    # words keep their own positions and the read-out is the EOT token: a shorter padded
    # context must give the same embedding
    model = build(tiny_clip, "vop")
    tok = tokens()
    assert torch.allclose(model.encode_text(tok), model.encode_text(tok[:, :8]), atol=1e-6)


def test_vop_f_without_deep_layers_equals_vop(tiny_clip):
    layers = tiny_clip.cfg.vision.layers
    vop = build(tiny_clip, "vop")
    vopf = build_model(tiny_clip, "vop-f", frames=FRAMES, overrides={"shallow_layers": layers}, seed=1)
    assert vopf.parameter_budget()["trainable"] == vop.parameter_budget()["trainable"]
    with torch.no_grad():
        vopf.prompts["text"].tokens.copy_(vop.prompts["text"].tokens)
        vopf.prompts["visual"].tokens.copy_(vop.prompts["visual"].tokens)
    vid = video()
    assert torch.equal(vopf.encode_video(vid), vop.encode_video(vid))
    assert torch.equal(vopf.encode_text(tokens()), vop.encode_text(tokens()))


def test_adapters_start_equal_to_clip(tiny_clip):
    z = build(tiny_clip, "zeroshot")
    for method in ("adapter-attn", "adapter-ffn"):
        m = build(tiny_clip, method)
        assert torch.allclose(m.encode_video(video()), z.encode_video(video()), atol=1e-6)
        assert torch.allclose(m.encode_text(tokens()), z.encode_text(tokens()), atol=1e-6)


def _loss(model):
    t, v = model.encode_text(tokens(2)), model.encode_video(video())
    logits = model.logit_scale() * model.similarity(t, v)
    target = torch.arange(2)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


@pytest.mark.parametrize("method", list(METHODS))
def test_only_trainable_parameters_get_gradients(tiny_clip, method):
    model = build(tiny_clip, method)
    model.train()
    loss = _loss(model)
    if method == "zeroshot":
        assert not loss.requires_grad and not model.trainable_named_parameters()
        return
    loss.backward()
    trainable = {n for n, _ in model.trainable_named_parameters()}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trainable
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad <= trainable
    # zero-init tensors (frame positions, adapter up-projections) still get a gradient
    missing = trainable - with_grad
    assert not missing, f"{method}: trainable tensors without gradient: {sorted(missing)}"
    # the shared backbone is never changed by building a method
    assert not any(p.requires_grad for p in tiny_clip.parameters())
    assert tiny_clip.visual.transformer.resblocks[0].attn_adapter is None


def test_trainable_sets_are_the_documented_ones(tiny_clip):
    names = lambda m: {n for n, _ in build(tiny_clip, m).trainable_named_parameters()}
    assert names("proj") == {"clip.visual.proj", "clip.text_projection"}
    assert names("vop") == {"prompts.text.tokens", "prompts.visual.tokens"}
    assert "clip.logit_scale" not in names("full")
    bias = names("bias")
    assert "clip.ln_final.bias" in bias and "clip.visual.transformer.resblocks.0.attn.in_proj_bias" in bias
    assert all(n.endswith("bias") for n in bias)
    last = tiny_clip.cfg.vision.layers - 1
    partial = names("partial")
    assert f"clip.visual.transformer.resblocks.{last}.mlp.c_fc.weight" in partial
    assert not any(".resblocks.0." in n for n in partial) and "clip.visual.proj" not in partial
    assert all("adapter" in n for n in names("adapter-ffn"))


@pytest.mark.parametrize("method,temporal", [
    ("vop-p", True), ("vop-c", True), ("vop-f", True), ("vop-fp", True), ("vop-fc", True),
    ("vop", False), ("zeroshot", False), ("full", False),
])
def test_reversed_frames(tiny_clip, method, temporal):
    model = build(tiny_clip, method)
    if method != "zeroshot":
        opt = torch.optim.AdamW([p for _, p in model.trainable_named_parameters()], lr=1e-2)
        model.train()
        _loss(model).backward()
        opt.step()  # one step makes position tables / frame positions non-zero
    model.eval()
    vid = video()
    with torch.no_grad():
        fwd, rev = model.encode_video(vid), model.encode_video(vid.flip(1))
    if temporal:
        assert (fwd - rev).abs().max() > 1e-4
    else:
        assert torch.allclose(fwd, rev, atol=1e-6)


def test_overrides_are_validated_and_recorded(tiny_clip):
    with pytest.raises(KeyError, match="cmm"):
        resolve_method("vop", {"cmm": "lstm"})
    with pytest.raises(KeyError, match="unknown method"):
        resolve_method("vop-x")
    for cmm in ("lstm", "transformer"):
        m = build_model(tiny_clip, "vop-c", frames=FRAMES, overrides={"cmm": cmm})
        assert m.method_config["components"][1]["cmm"] == cmm
        assert m.encode_video(video()).shape == (2, tiny_clip.cfg.embed_dim)
    m = build_model(tiny_clip, "vop-f", frames=FRAMES)  # default K^s = round(2/3 K): 1 of 2
    assert [c.get("shallow_layers") for c in m.method_config["components"]] == [None, 1, 1]
    assert build_model(tiny_clip, "vop", FRAMES).method_config["components"][1]["shallow_layers"] == 2


def test_shallow_depth_is_two_thirds_of_the_layers():
    from vop.prompts.base import K_S, resolve_depth

    assert [resolve_depth(K_S, k) for k in (2, 6, 12, 24)] == [1, 4, 8, 16]  # ViT-B/32: the paper's 8 of 12
    assert resolve_depth(None, 6) == 6 and resolve_depth(-4, 6) == 2 and resolve_depth(3, 6) == 3


def test_frame_count_is_checked_for_frame_indexed_methods(tiny_clip):
    with pytest.raises(ValueError, match="4 frames"):
        build(tiny_clip, "vop-p").encode_video(video(f=3))
    assert build(tiny_clip, "vop").encode_video(video(f=3)).shape == (2, tiny_clip.cfg.embed_dim)


def test_token_layout_per_layer(tiny_clip, monkeypatch):
    """Block inputs: text [N, L'] words (L' = up to the last EOT) + 8 prompts as context; frame
    layers [B*F, 1 + P] + [B*F, 8]; deep layers [B, F + F*P] + 8 video prompts."""
    seen = {"text": [], "vision": []}
    contexts = {}
    for key, tr in (("text", tiny_clip.transformer), ("vision", tiny_clip.visual.transformer)):
        original = tr.run_block

        def record(i, x, is_causal=False, context=None, _orig=original, _key=key):
            seen[_key].append((i, tuple(x.shape[:2]), None if context is None else tuple(context.shape[:2]),
                               is_causal))
            contexts[_key, i] = context
            return _orig(i, x, is_causal, context)

        monkeypatch.setattr(tr, "run_block", record)
    model = build(tiny_clip, "vop-f")
    model.encode_text(tokens(3))
    model.encode_video(video(b=2))
    patches = tiny_clip.cfg.vision.num_patches  # 16
    longest = 5  # SOT, 3 words, EOT: the padding after the batch's last EOT is cut
    assert seen["text"] == [(0, (3, longest), (1, 8), True), (1, (3, longest), (1, 8), True)]
    assert seen["vision"] == [(0, (2 * FRAMES, 1 + patches), (2 * FRAMES, 8), False),
                              (1, (2, FRAMES + FRAMES * patches), (1, 8), False)]
    # raw prompts (layer-1 visual prompts through ln_pre, as if inserted before it)
    assert torch.equal(contexts["text", 1][0], model.prompts["text"].tokens[1])
    assert torch.equal(contexts["vision", 1][0], model.prompts["deep"].video[0])
    assert torch.equal(contexts["vision", 0][0], tiny_clip.visual.ln_pre(model.prompts["visual"].tokens[0]))


PROMPTED = ["text-prompt", "visual-prompt", "vop", "vop-p", "vop-c", "vop-f", "vop-fp", "vop-fc"]


@pytest.mark.parametrize("method", PROMPTED)
def test_key_value_only_prompts_equal_the_concatenated_sequence(method, monkeypatch):
    """The definition: a block runs on ``cat([prompts, tokens])`` and the prompt outputs are
    dropped. Our blocks never compute those outputs; embeddings and gradients must not change."""
    from vop.backbone.clip import build_clip

    def run(reference: bool):
        clip = build_clip("tiny", seed=0)
        if reference:
            for tr in (clip.transformer, clip.visual.transformer):
                def concat(i, x, is_causal=False, context=None, _orig=tr.run_block):
                    if context is None:
                        return _orig(i, x, is_causal)
                    c = context.expand(x.shape[0], -1, -1)
                    return _orig(i, torch.cat([c, x], dim=1), is_causal)[:, c.shape[1]:]

                monkeypatch.setattr(tr, "run_block", concat)
        model = build(clip, method)
        with torch.no_grad():  # non-zero prompts everywhere (some components start at zero)
            for _, p in model.trainable_named_parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        model.train()
        loss = _loss(model)
        loss.backward()
        return (model.encode_text(tokens()).detach(), model.encode_video(video()).detach(),
                {n: p.grad for n, p in model.trainable_named_parameters()})

    (t0, v0, g0), (t1, v1, g1) = run(False), run(True)
    assert torch.allclose(t0, t1, atol=1e-5) and torch.allclose(v0, v1, atol=1e-5)
    assert g0.keys() == g1.keys() and g0
    for n in g0:
        assert torch.allclose(g0[n], g1[n], atol=1e-5, rtol=1e-4), n


@pytest.mark.parametrize("method", ["vop", "vop-fc"])
def test_grad_checkpointing_gives_the_same_gradients(method):
    from vop.backbone.clip import build_clip

    grads = []
    for ckpt in (False, True):
        model = build(build_clip("tiny", seed=0), method)
        model.clip.set_grad_checkpointing(ckpt)
        model.train()
        _loss(model).backward()
        grads.append({n: p.grad for n, p in model.trainable_named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-6), n
