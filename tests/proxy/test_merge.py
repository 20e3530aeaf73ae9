"""Merging components: one-hot identity, streaming == in-memory, task arithmetic / TIES, refusals, CLI, mergekit."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from proxy.cli.main import main
from proxy.components import load_components
from proxy.merge import MergeError, MergeSettings, merge_to_folder, ties_combine
from proxy.proxies import ProxyFactory
from proxy.synthetic import tiny_qwen3_config, write_synthetic_components
from proxy.weights import CheckpointError

NAMES = ["code_high", "general", "math_high"]


@pytest.fixture(scope="module")
def components(tmp_path_factory) -> Path:
    return write_synthetic_components(tmp_path_factory.mktemp("components"), NAMES, seed=3, noise=0.05)


def weights_of(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_one_hot_gives_component_back(components, tmp_path):
    for name in NAMES:
        out = merge_to_folder(components, {n: float(n == name) for n in NAMES}, tmp_path / name)
        merged, comp = weights_of(out), weights_of(components / name)
        assert merged.keys() == comp.keys()
        assert all(torch.equal(merged[k], comp[k]) for k in comp)
    factory = ProxyFactory(components, device="cpu")
    sd = factory.state_dict_of({"code_high": 0.0, "general": 1.0, "math_high": 0.0})
    comp = weights_of(components / "general")
    assert all(torch.equal(sd[k], comp[k]) for k in comp)


def test_streaming_equals_in_memory_and_formula(components, tmp_path):
    ratios = {"code_high": 2.0, "general": 5.0, "math_high": 3.0}  # normalized to 0.2/0.5/0.3
    out = merge_to_folder(components, ratios, tmp_path / "m")
    merged = weights_of(out)
    comps = {n: weights_of(components / n) for n in NAMES}
    expected = {
        k: 0.2 * comps["code_high"][k] + 0.5 * comps["general"][k] + 0.3 * comps["math_high"][k] for k in merged
    }
    assert max((merged[k] - expected[k]).abs().max().item() for k in merged) < 1e-6
    sd = ProxyFactory(components, device="cpu").state_dict_of(ratios)
    assert max((sd[k] - merged[k]).abs().max().item() for k in merged) < 1e-6
    demix = json.loads((out / "demix.json").read_text())
    assert demix["mixture"] == pytest.approx({"code_high": 0.2, "general": 0.5, "math_high": 0.3})
    assert (out / "config.json").exists()
    # bf16 output is the float32 merge rounded once.
    out16 = merge_to_folder(components, ratios, tmp_path / "m16", MergeSettings(dtype="bfloat16"))
    m16 = weights_of(out16)
    assert all(m16[k].dtype == torch.bfloat16 and torch.equal(m16[k], merged[k].to(torch.bfloat16)) for k in m16)
    assert json.loads((out16 / "config.json").read_text())["dtype"] == "bfloat16"


def test_task_arithmetic_and_ties(components, tmp_path):
    ratios = {"code_high": 0.2, "general": 0.5, "math_high": 0.3}
    lin = weights_of(merge_to_folder(components, ratios, tmp_path / "lin"))
    base = weights_of(components / "base")
    ta = weights_of(merge_to_folder(components, ratios, tmp_path / "ta", MergeSettings(method="task_arithmetic")))
    assert max((ta[k] - lin[k]).abs().max().item() for k in lin) < 1e-6  # normalized ratios, scale 1
    ta0 = weights_of(
        merge_to_folder(components, ratios, tmp_path / "ta0", MergeSettings(method="task_arithmetic", scale=0.0))
    )
    assert all(torch.equal(ta0[k], base[k]) for k in base)
    ties = weights_of(merge_to_folder(components, ratios, tmp_path / "ties", MergeSettings(method="ties", density=0.3)))
    changed = sum(int((ties[k] != base[k]).sum()) for k in base)
    total = sum(v.numel() for v in base.values())
    assert 0 < changed <= 0.9 * total
    # Hand case: sign election and disjoint mean, then trimming.
    deltas = torch.tensor([[1.0, -2.0, 3.0], [-1.0, -1.0, 1.0]])
    w = torch.tensor([0.5, 0.5])
    assert torch.allclose(ties_combine(deltas, w, 1.0), torch.tensor([0.0, -1.5, 2.0]))
    assert torch.allclose(ties_combine(deltas[:1], w[:1], 0.5), torch.tensor([0.0, -2.0, 3.0]))


def test_mismatched_components_refused(components, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(components / "math_high", bad)
    state = weights_of(bad)
    name = sorted(state)[3]
    state[name] = state[name][..., :-1].contiguous()
    save_file(state, str(bad / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as err:
        merge_to_folder(load_components([components / "general", bad]), {"general": 0.5, "bad": 0.5}, tmp_path / "o")
    assert name in str(err.value) and str(bad) in str(err.value) and "general" in str(err.value)
    other = write_synthetic_components(tmp_path / "other", ["x"], tiny_qwen3_config(intermediate_size=48))
    with pytest.raises(CheckpointError, match="intermediate_size"):
        ProxyFactory([components / "general", other / "x"], device="cpu")


def test_mixture_keys_must_match(components, tmp_path):
    with pytest.raises(MergeError, match=r"unknown \['code_low'\], missing \['math_high'\]"):
        merge_to_folder(components, {"code_high": 0.5, "general": 0.25, "code_low": 0.25}, tmp_path / "o")


def test_cli_merge(components, tmp_path, capsys):
    mix = tmp_path / "mix.json"
    mix.write_text(
        json.dumps({"name": "m", "level": "candidate", "ratios": {n: 1 / 3 for n in NAMES}, "provenance": {}})
    )
    out = tmp_path / "merged"
    assert main(["merge", "--components", str(components), "--mixture", str(mix), "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mixture"] == pytest.approx({n: 1 / 3 for n in NAMES})
    assert (
        main(["merge", "--components", str(components), "--mixture", str(mix), "--out", str(out)]) == 0
    )  # rerun: kept
    mix.write_text(
        json.dumps(
            {
                "name": "m2",
                "level": "candidate",
                "ratios": {"code_high": 1.0, "general": 0.0, "math_high": 0.0},
                "provenance": {},
            }
        )
    )
    assert main(["merge", "--components", str(components), "--mixture", str(mix), "--out", str(out)]) == 1
    assert "already holds" in capsys.readouterr().err


def _mergekit_yaml() -> list[str] | None:
    if importlib.util.find_spec("mergekit") is not None:  # the interpreter running the tests, not whatever `python` is
        return [sys.executable, "-m", "mergekit.scripts.run_yaml"]
    cmd = os.environ.get("MERGEKIT_YAML") or shutil.which("mergekit-yaml")
    return cmd.split() if cmd else None


@pytest.mark.skipif(_mergekit_yaml() is None, reason="mergekit is not installed (pip install mergekit)")
def test_linear_equals_mergekit(components, tmp_path):
    ratios = {"code_high": 0.2, "general": 0.5, "math_high": 0.3}
    ours = weights_of(merge_to_folder(components, ratios, tmp_path / "ours"))
    config = {
        "merge_method": "linear",
        "dtype": "float32",
        "models": [{"model": str(components / n), "parameters": {"weight": w}} for n, w in ratios.items()],
    }
    (tmp_path / "mk.yaml").write_text(json.dumps(config))
    cmd = _mergekit_yaml() + [str(tmp_path / "mk.yaml"), str(tmp_path / "mk")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = {}
    for f in sorted((tmp_path / "mk").glob("*.safetensors")):
        theirs.update(load_file(str(f)))
    assert set(ours) <= set(theirs)
    assert max((ours[k] - theirs[k].float()).abs().max().item() for k in ours) < 1e-6


def test_budget_selects_checkpoints(components):
    assert load_components(components, budget=1000).paths == tuple(components / n for n in NAMES)
    with pytest.raises(CheckpointError, match="no checkpoint at 5 tokens"):
        load_components(components, budget=5)
