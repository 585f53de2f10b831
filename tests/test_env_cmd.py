"""`vop env` prints the versions and devices a bug report needs."""

from __future__ import annotations

import json

from vop.cli import main


def test_env_text(capsys):
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    import torch

    for label in (
        "python",
        "torch",
        "numpy",
        "av",
        "transformers",
        "fastapi",
        "torch threads",
        "cuda",
        "platform",
    ):
        assert any(line.startswith(label) for line in out.splitlines()), label
    assert torch.__version__.split("+")[0] in out


def test_env_json(capsys):
    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    import torch

    assert info["torch_threads"] == torch.get_num_threads()
    assert info["cuda_available"] == torch.cuda.is_available()
    assert info["packages"]["vop"] == __import__("vop").__version__
    assert "faiss-cpu" in info["packages"]
