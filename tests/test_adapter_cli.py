"""``vop adapter inspect`` reads the metadata and tensor shapes of a saved adapter."""

import json

from vop.adapter import save_adapter
from vop.cli import main
from vop.model import build_model


def test_inspect(tiny_clip, tmp_path, capsys):
    save_adapter(build_model(tiny_clip, "vop-p", frames=4), tmp_path, extra={"epoch": 2})
    assert main(["adapter", "inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "vop-p" in out and tiny_clip.weights_sha256 in out and '"epoch": 2' in out
    assert "prompts.visual.position" in out and "[2, 4, 4, 64]" in out
    assert main(["adapter", "inspect", str(tmp_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["tensors"]["prompts.text.tokens"] == [2, 8, 32]
    assert info["parameters"]["trainable"] == 2 * 8 * 32 + 2 * (4 + 4 * 4) * 64


def test_inspect_missing(tmp_path, capsys):
    assert main(["adapter", "inspect", str(tmp_path)]) == 2
    assert "adapter.json: not found" in capsys.readouterr().err
