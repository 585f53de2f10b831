"""``vop methods``: budgets and adapter sizes come from real builds and real saved files."""

import json

from vop.cli import main


def test_methods_json_on_tiny(capsys):
    assert main(["methods", "--config", "tiny", "--frames", "4", "--json"]) == 0
    rows = {r["method"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["zeroshot"]["trainable"] == 0
    assert rows["vop"]["trainable"] == 8 * 32 * 2 + 8 * 64 * 2
    # float32 tensors: the file holds every trainable number plus a small header
    for r in rows.values():
        assert 4 * r["trainable"] <= r["adapter_bytes"] <= 4 * r["trainable"] + 8192
    assert rows["full"]["whole_model"] and not rows["vop"]["whole_model"]
    assert rows["vop-f"]["frame_pos"] == 4 * 64


def test_methods_table_and_errors(capsys):
    assert main(["methods", "--config", "tiny", "--frames", "4", "--method", "vop", "--method", "full"]) == 0
    out = capsys.readouterr().out
    assert "vop " in out and "adapter = the whole model" in out and "vop-p" not in out
    assert main(["methods", "--config", "nope"]) == 2
    assert "ViT-B-32" in capsys.readouterr().err
    assert main(["methods", "--config", "tiny", "--method", "vop-z"]) == 2


def test_backbone_is_a_deprecated_alias_of_config(capsys):
    """``--backbone`` names weights everywhere else; here it still works, with one warning line."""
    assert main(["methods", "--config", "tiny", "--frames", "4", "--method", "vop", "--json"]) == 0
    new = capsys.readouterr()
    assert new.err == ""
    assert main(["methods", "--backbone", "tiny", "--frames", "4", "--method", "vop", "--json"]) == 0
    old = capsys.readouterr()
    assert json.loads(old.out) == json.loads(new.out)
    assert old.err.strip() == ("vop methods: warning: --backbone is deprecated here (it names a config, "
                               "not weights): use --config tiny")
    assert main(["methods", "--config", "tiny", "--backbone", "ViT-B-32", "--frames", "4", "--method", "vop",
                 "--json"]) == 0
    both = capsys.readouterr()
    assert json.loads(both.out) == json.loads(new.out) and "--backbone ViT-B-32 ignored" in both.err


def test_help_names_config_not_backbone(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["methods", "--help"])
    out = capsys.readouterr().out
    assert "--config NAME" in out and "--backbone" not in out.split("options:")[-1]
