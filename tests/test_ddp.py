"""DDP on CPU: `torchrun --nproc_per_node 2` (gloo) trains like one process with the same global batch.

The recipe's ``optim.batch_size`` is the global batch, so the two runs use the same recipe: two
ranks with 2 pairs each against one process with 4. The gathered InfoNCE must make the final
trainable tensors equal to float tolerance.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

from vop.cli import main

RECIPE = """name: ddp
seed: 0
model: {{backbone: {root}/tiny.safetensors, method: vop, frames: 4, overrides: {{text_length: 2, visual_length: 2}}}}
data: {{dataset: csv, annotations: {root}/ann.csv, videos: {root}/videos, train_split: train, val_split: val,
        image_size: 32}}
optim: {{lr: 1.0e-2, epochs: 2, batch_size: 4, warmup_fraction: 0.0}}
run: {{log_every: 1}}
"""


@pytest.mark.slow
def test_two_gloo_ranks_equal_one_process_with_double_batch(tiny_retrieval_project):
    root = tiny_retrieval_project
    recipe = root / "ddp.yaml"
    recipe.write_text(RECIPE.format(root=root))
    assert main(["train", str(recipe), "--out", str(root / "single"), "--no-progress"]) == 0

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "vop", "train", str(recipe), "--out", str(root / "ddp"), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "over 2 rank(s)" in proc.stdout

    load = lambda d: torch.load(root / d / "checkpoints" / "last.pt", weights_only=True)
    single, ddp = load("single"), load("ddp")
    assert ddp["world_size"] == 2 and single["progress"]["step"] == ddp["progress"]["step"] == 4
    from vop.backbone.clip import build_clip
    from vop.model import build_model

    init = dict(build_model(build_clip("tiny", seed=0), "vop", 4, {"text_length": 2, "visual_length": 2},
                            seed=0).trainable_named_parameters())
    for name, value in single["trainable"].items():
        moved = (value - init[name].detach()).abs().max()
        assert moved > 1e-3, f"{name} barely trained; the comparison would prove nothing"
        torch.testing.assert_close(ddp["trainable"][name], value, rtol=1e-5, atol=1e-6)
    # only rank 0 wrote: one log, no stray temporary files
    assert (root / "ddp" / "train.log").read_text().count("trainable params:") == 1
    assert not list((root / "ddp").rglob("*.tmp"))
    shutil.rmtree(root / "ddp")
