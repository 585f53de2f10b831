"""``--runtime openvino`` end to end through the CLI on a tiny model: ``vop index`` (int8 calibrated
on the first videos, recorded in the manifest), ``vop search`` (openvino queries against the index,
scores equal to PyTorch's), indexes of different runtimes searchable together, ``vop eval``
calibrated on the validation split and refusing the evaluated one."""

from __future__ import annotations

import json

import pytest

from vop.cli import main
from vop.index.manifest import read_manifest


@pytest.fixture()
def project(tiny_retrieval_project, tmp_path, monkeypatch):
    monkeypatch.setenv("VOP_OPENVINO_CACHE", str(tmp_path / "ov-cache"))
    return tiny_retrieval_project


def _search(capsys, index, *extra):
    assert main(["search", str(index), "a video number 3", "-k", "5", "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_index_and_search_with_openvino(project, tmp_path, capsys):
    backbone, videos, index = project / "tiny.safetensors", project / "videos", tmp_path / "idx"
    args = ["index", str(videos), "--backbone", str(backbone), "--out", str(index), "--frames", "4", "--quiet"]
    assert main([*args, "--runtime", "openvino", "--precision", "int8", "--calibration-videos", "3"]) == 0
    m = read_manifest(index)
    assert (m.runtime, m.precision) == ("openvino", "int8")
    assert m.calibration["videos"] == 3 and str(videos.resolve()) in m.calibration["source"]
    assert (tmp_path / "ov-cache").is_dir() and any((tmp_path / "ov-cache").iterdir())
    capsys.readouterr()

    torch_q = _search(capsys, index)
    ov_q = _search(capsys, index, "--runtime", "openvino")
    assert torch_q["runtime"] == {"query": "torch", "index": "openvino"}
    assert ov_q["runtime"] == {"query": "openvino", "index": "openvino"} and ov_q["precision"]["index"] == "int8"
    assert [r["path"] for r in ov_q["results"]] == [r["path"] for r in torch_q["results"]]
    for a, b in zip(ov_q["results"], torch_q["results"]):
        assert abs(a["score"] - b["score"]) <= 1e-4

    # a torch fp32 index of the same videos: the openvino int8 vectors are close to its vectors
    ref = tmp_path / "ref"
    assert main([*args[:4], "--out", str(ref), "--frames", "4", "--quiet"]) == 0
    assert read_manifest(ref).runtime == "torch"
    capsys.readouterr()
    fp32 = _search(capsys, ref)
    assert {r["path"] for r in fp32["results"][:3]} & {r["path"] for r in torch_q["results"][:3]}

    # re-run with another runtime: kept rows were encoded by openvino, so the manifest says mixed
    assert main([*args, "--runtime", "torch"]) == 0
    m = read_manifest(index)
    assert (m.runtime, m.precision) == ("mixed", "mixed")
    capsys.readouterr()
    assert _search(capsys, index)["results"]


def test_an_index_of_the_older_fbgemm_int8_still_searches(project, tmp_path, capsys):
    index = tmp_path / "old"
    assert main(["index", str(project / "videos"), "--backbone", str(project / "tiny.safetensors"), "--out",
                 str(index), "--frames", "4", "--quiet", "--runtime", "torch", "--precision", "int8"]) == 0
    assert (read_manifest(index).runtime, read_manifest(index).precision) == ("torch", "int8")
    capsys.readouterr()
    for extra in ([], ["--precision", "int8"]):  # torch fp32 queries and openvino int8 (text) queries
        found = _search(capsys, index, *extra)
        assert len(found["results"]) == 5 and found["precision"]["index"] == "int8"
    assert found["runtime"] == {"query": "openvino", "index": "torch"}


def test_bf16_or_its_refusal_in_the_cli(project, tmp_path, capsys):
    from vop.runtime.openvino import cpu_capabilities

    args = ["index", str(project / "videos"), "--backbone", str(project / "tiny.safetensors"), "--out",
            str(tmp_path / "idx"), "--frames", "4", "--quiet", "--runtime", "openvino", "--precision", "bf16"]
    code = main(args)
    if "BF16" in cpu_capabilities():
        assert code == 0 and read_manifest(tmp_path / "idx").precision == "bf16"
    else:
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("vop index: error:") and "--precision int8" in err[0]
    code = main([*args[:-4], "--runtime", "torch", "--precision", "bf16"])
    assert code == 2 and "--runtime openvino" in capsys.readouterr().err


def test_eval_with_openvino_int8_calibrates_on_validation(project, tmp_path, capsys):
    common = ["eval", "--method", "zeroshot", "--backbone", str(project / "tiny.safetensors"), "--frames", "4",
              "--dataset", "csv", "--annotations", str(project / "ann.csv"), "--videos", str(project / "videos"),
              "--split", "test", "--no-progress"]
    assert main([*common, "--json", str(tmp_path / "fp32.json")]) == 0
    assert main([*common, "--precision", "int8", "--json", str(tmp_path / "i8.json")]) == 0  # int8 runs on openvino
    out = capsys.readouterr().out
    assert "runtime: openvino, precision: int8, calibrated on the first 2 videos of the val split" in out
    fp32, i8 = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("fp32", "i8"))
    assert i8["runtime"] == "openvino" and i8["calibration"]["videos"] == 2 and fp32["runtime"] == "torch"
    assert i8["t2v"].keys() == fp32["t2v"].keys()
    code = main([*common, "--runtime", "openvino", "--precision", "int8", "--calibration-split", "test"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is the split being evaluated" in err[0]


def test_serve_with_openvino_queries(project, tmp_path):
    from vop.serve.service import load_service

    index = tmp_path / "idx"
    assert main(["index", str(project / "videos"), "--backbone", str(project / "tiny.safetensors"), "--out",
                 str(index), "--frames", "4", "--quiet"]) == 0
    torch_service = load_service([str(index)])
    service = load_service([str(index)], runtime="openvino")  # what `vop serve --runtime openvino` runs
    try:
        (c,) = service.collections.values()
        assert c.searcher.encoder.model.timings["text"]["precision"] == "fp32"  # compiled at start, not on a query
        (t,) = torch_service.collections.values()
        got = c.searcher.search_text("a video number 3", 5)
        ref = t.searcher.search_text("a video number 3", 5)
        assert [h.path for h in got] == [h.path for h in ref]
        assert max(abs(a.score - b.score) for a, b in zip(got, ref)) <= 1e-4
    finally:
        service.close()
        torch_service.close()
