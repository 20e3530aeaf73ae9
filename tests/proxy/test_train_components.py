"""End to end on the tiny corpus: proxy base -> proxy components -> loadable, mergeable checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

import proxy.training.loop as training_loop
from proxy.cli.main import main
from proxy.training.run import component_ratios, default_candidates

SMALL = ["--seq-len", "64", "--batch-size", "4", "--no-progress"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads; one thread avoids spin-waiting on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run(*argv: str) -> list[dict]:
    """Run the proxy CLI in-process with --json; return the parsed outcome rows."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main([*argv, *SMALL, "--json"])
    assert rc == 0
    return json.loads(buf.getvalue())


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory) -> tuple[Path, Path]:
    """A base (8 steps) and components for every candidate (4 steps, checkpoints at 2 and 4 steps)."""
    runs = tmp_path_factory.mktemp("runs")
    run("base", "--db", str(tiny_corpus), "--config", "tiny", "--tokens", str(8 * 4 * 64), "--out", str(runs / "base"))
    run(
        "components",
        "--base",
        str(runs / "base"),
        "--db",
        str(tiny_corpus),
        "--tokens",
        str(4 * 4 * 64),
        "--checkpoints",
        f"{2 * 4 * 64},{4 * 4 * 64}",
        "--save-every",
        "2",
        "--out",
        str(runs / "components"),
    )
    return runs / "base", runs / "components"


def test_component_ratios_split_candidate_and_general(tiny_corpus):
    r = component_ratios(tiny_corpus, "code_high", 0.5)
    assert set(r) == {"code_a", "gen_a", "gen_b"} and sum(r.values()) == pytest.approx(1.0, abs=1e-12)
    assert r["code_a"] == pytest.approx(0.5) and r["gen_a"] + r["gen_b"] == pytest.approx(0.5)
    assert sum(component_ratios(tiny_corpus, "general", 0.5).values()) == pytest.approx(1.0, abs=1e-12)
    assert default_candidates(tiny_corpus) == ["code_high", "general", "math_high"]
    with pytest.raises(ValueError, match="no train tokens"):
        component_ratios(tiny_corpus, "nope", 0.5)


def test_components_share_base_architecture_and_tensor_names(trained, tiny_corpus):
    base, comps = trained
    index = json.loads((comps / "components.json").read_text())
    assert index["base"] == str(base.resolve()) and index["general_share"] == 0.5 and index["tokens"] == 4 * 4 * 64
    assert sorted(index["candidates"]) == ["code_high", "general", "math_high"]
    base_weights = load_file(str(base / "model.safetensors"))
    base_cfg = json.loads((base / "config.json").read_text())
    finals = {}
    for cand, entry in index["candidates"].items():
        folders = [comps / entry["path"]] + [comps / p for p in entry["checkpoints"].values()]
        assert sorted(map(int, entry["checkpoints"])) == [2 * 4 * 64, 4 * 4 * 64]
        for folder in folders:
            weights = load_file(str(folder / "model.safetensors"))
            assert weights.keys() == base_weights.keys()
            assert all(weights[k].shape == base_weights[k].shape for k in weights)
            cfg = json.loads((folder / "config.json").read_text())
            assert {k: cfg[k] for k in ("hidden_size", "num_hidden_layers", "vocab_size")} == {
                k: base_cfg[k] for k in ("hidden_size", "num_hidden_layers", "vocab_size")
            }
        demix = json.loads((comps / cand / "demix.json").read_text())
        assert demix["kind"] == "component" and demix["base"] == str(base.resolve()) and demix["candidate"] == cand
        finals[cand] = load_file(str(comps / cand / "model.safetensors"))
        # the last budget equals the run's tokens: that checkpoint is the final model
        last = load_file(str(comps / entry["checkpoints"][str(4 * 4 * 64)] / "model.safetensors"))
        assert all(torch.equal(last[k], finals[cand][k]) for k in last)
    key = "model.layers.0.mlp.down_proj.weight"
    assert not torch.equal(finals["code_high"][key], base_weights[key])
    assert not torch.equal(finals["code_high"][key], finals["math_high"][key])
    assert not (comps / "code_high" / "training_state").exists()


def test_one_hot_searched_mixture_resolves_to_its_components_stream(trained, tiny_corpus):
    """A one-hot alpha, materialised with the provenance a search records, is the component's own training data."""
    from mixer import Mixture, Plan, resolve_mixture
    from proxy.components import load_components

    _, comps = trained
    provenance = load_components(comps).general_provenance()
    assert provenance == {"general_share": 0.5, "general": {"level": "domain", "ratios": {"general": 1.0}}}
    for cand in ("code_high", "general", "math_high"):
        trained_on = Plan.load(comps / cand / "plan.json")  # what the component's sampler streamed
        stream = {s.source: s.share for s in trained_on.sources}
        alpha = Mixture(
            "one-hot",
            "candidate",
            {c: float(c == cand) for c in ("code_high", "general", "math_high")},
            provenance={"method": "demix-search", **provenance},
        )
        resolved = {s.source: s.share for s in resolve_mixture(alpha, tiny_corpus, 10**9).sources}
        assert resolved.keys() == stream.keys()
        assert all(abs(resolved[s] - stream[s]) < 1e-9 for s in stream)
        if cand != "general":
            assert sum(v for s, v in stream.items() if s.startswith("gen_")) == pytest.approx(0.5, abs=1e-12)


def test_checkpoints_load_with_transformers(trained):
    base, comps = trained
    tok = AutoTokenizer.from_pretrained(str(comps / "math_high"))
    model = AutoModelForCausalLM.from_pretrained(str(comps / "math_high" / "checkpoints" / f"tokens-{2 * 4 * 64}"))
    ids = torch.tensor([tok.encode("Problem: compute 2 + 3.")])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss
    assert torch.isfinite(loss) and model.config.vocab_size == len(tok)
    assert json.loads((base / "demix.json").read_text())["kind"] == "base"


def test_rerun_skips_finished_components(trained, tiny_corpus):
    base, comps = trained
    before = (comps / "general" / "model.safetensors").stat().st_mtime_ns
    rows = run(
        "components",
        "--base",
        str(base),
        "--db",
        str(tiny_corpus),
        "--tokens",
        str(4 * 4 * 64),
        "--checkpoints",
        f"{2 * 4 * 64},{4 * 4 * 64}",
        "--out",
        str(comps),
    )
    assert [r["status"] for r in rows] == ["skipped"] * 3
    assert (comps / "general" / "model.safetensors").stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="general_share"):
        main(
            [
                "--debug",
                "components",
                "--base",
                str(base),
                "--db",
                str(tiny_corpus),
                "--tokens",
                str(4 * 4 * 64),
                "--general-share",
                "0.25",
                "--out",
                str(comps),
                *SMALL,
            ]
        )
    with pytest.raises(ValueError, match="other settings.*lr"):
        main(
            [
                "--debug",
                "components",
                "--base",
                str(base),
                "--db",
                str(tiny_corpus),
                "--tokens",
                str(4 * 4 * 64),
                "--lr",
                "0.5",
                "--out",
                str(comps),
                *SMALL,
            ]
        )


def test_killed_train_resumes_bit_identical_with_sampler(tiny_corpus, tmp_path, monkeypatch):
    mix = tmp_path / "mix.json"
    mix.write_text(
        json.dumps({"name": "m", "level": "domain", "ratios": {"general": 0.6, "math": 0.4}, "provenance": {}})
    )
    args = [
        "train",
        "--mixture",
        str(mix),
        "--db",
        str(tiny_corpus),
        "--config",
        "tiny",
        "--tokens",
        str(8 * 4 * 64),
        "--save-every",
        "3",
    ]
    run(*args, "--out", str(tmp_path / "ref"))
    real, calls = training_loop._batches, {"n": 0}

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:  # during step 5, after the state saved at step 3
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(training_loop, "_batches", dying)
    assert main([*args, "--out", str(tmp_path / "run"), *SMALL]) == 1
    assert not (tmp_path / "run" / "demix.json").exists()
    monkeypatch.setattr(training_loop, "_batches", real)
    rows = run(*args, "--out", str(tmp_path / "run"))
    assert rows[0]["status"] == "resumed@3"
    a, b = (
        load_file(str(tmp_path / "ref" / "model.safetensors")),
        load_file(str(tmp_path / "run" / "model.safetensors")),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_torchrun_two_cpu_ranks_ddp_and_fsdp(tiny_corpus, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    folders = {}
    for mode in ("ddp", "fsdp"):
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "proxy",
            "base",
            "--db",
            str(tiny_corpus),
            "--config",
            "tiny",
            "--tokens",
            str(4 * 4 * 64 * 2),
            "--out",
            str(tmp_path / mode),
            *SMALL,
            "--json",
            *(["--fsdp"] if mode == "fsdp" else []),
        ]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-2000:]
        rows = json.loads(done.stdout)
        assert rows[0]["steps"] == 4 and rows[0]["tokens"] == 4 * 4 * 64 * 2
        assert AutoModelForCausalLM.from_pretrained(str(tmp_path / mode)) is not None
        folders[mode] = load_file(str(tmp_path / mode / "model.safetensors"))
    ddp, fsdp = folders["ddp"], folders["fsdp"]
    assert ddp.keys() == fsdp.keys()
    assert all(torch.allclose(ddp[k], fsdp[k], atol=1e-5) for k in ddp)  # sharding does not change the result
