"""What the CLI prints to a person: one error line ``vop COMMAND: error: ...`` (exit 2), plain-text help."""

from __future__ import annotations

import pytest

from vop.cli import COMMANDS, build_parser, main


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("argv", [[name] for name in COMMANDS] + [["data", "check"], ["adapter", "inspect"]])
def test_help_is_plain_text(argv, capsys):
    out = _help(argv, capsys)
    assert f"usage: vop {' '.join(argv)}" in out
    assert "``" not in out and "::\n" not in out


def test_every_command_is_registered():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    assert list(sub.choices) == list(COMMANDS)


@pytest.mark.parametrize("argv, command, reason", [
    (["eval", "--method", "zeroshot", "--dataset", "msvd", "--annotations", "{tmp}"],
     "eval", "--method zeroshot needs --backbone"),
    (["eval", "--adapter", "{tmp}/nope", "--dataset", "msvd", "--annotations", "{tmp}"],
     "eval", "adapter.json: not found"),
    (["index", "{tmp}/missing", "--out", "{tmp}/idx"], "index", "--backbone is required"),
    (["index", "--out", "{tmp}/idx", "--backbone", "tiny-synthetic"], "index", "VIDEO_DIR is required"),
    (["index", "{tmp}/missing", "--out", "{tmp}/idx", "--backbone", "tiny-synthetic"],
     "index", "video folder {tmp}/missing does not exist"),
    (["search", "{tmp}/nope", "a query"], "search", "manifest.json not found"),
    (["serve", "{tmp}/nope"], "serve", "manifest.json not found"),
    (["train", "{tmp}/nope.yaml"], "train", "config file not found"),
    (["data", "check", "kinetics", "--annotations", "{tmp}"], "data check", "unknown dataset 'kinetics'"),
    (["prepare", "msvd", "--annotations", "{tmp}/nope", "--videos", "{tmp}", "--cache", "{tmp}/c"],
     "prepare", "no split could be read"),
    (["methods", "--config", "ViT-X"], "methods", "ViT-X"),
    (["methods", "--method", "nope"], "methods", "unknown method(s) nope"),
    (["adapter", "inspect", "{tmp}/nope"], "adapter inspect", "adapter.json: not found"),
])
def test_user_errors_are_one_prefixed_line(argv, command, reason, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"vop {command}: error: "), err
    assert reason.replace("{tmp}", str(tmp_path)) in err[-1]


def test_argparse_errors_use_the_same_prefix(capsys):
    with pytest.raises(SystemExit) as info:
        main(["search"])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("vop search: error: ")
