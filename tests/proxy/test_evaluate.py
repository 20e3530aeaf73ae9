"""Held-out evaluation: packing, determinism, a hand-checked bits-per-byte case, CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from manifests import list_shards, list_sources
from proxy.cli.main import main
from proxy.evaluate import IGNORE, ValidationSet, evaluate_model
from proxy.synthetic import tiny_qwen3_config, write_synthetic_components


@pytest.fixture(scope="module")
def vset(tiny_corpus) -> ValidationSet:
    return ValidationSet.from_manifest(tiny_corpus, tokens_per_domain=600, seq_len=64)


@pytest.fixture(scope="module")
def components(tiny_corpus, tmp_path_factory):
    return write_synthetic_components(
        tmp_path_factory.mktemp("eval_components"),
        ["general", "code", "math"],
        tiny_qwen3_config(vocab_size=384),
        tokenizer_dir=tiny_corpus / "tokenizer",
        db=str(tiny_corpus / "manifest.duckdb"),
    )


def test_packing_hand_case():
    docs = {"d": [([5, 6, 7], "abc"), ([8, 9], "xyz!"), ([1] * 50, "z" * 50)]}
    vs = ValidationSet.from_documents(docs, eos_id=0, tokens_per_domain=6, seq_len=4)
    (d,) = vs.domains
    assert (d.n_docs, d.n_tokens, d.n_bytes) == (2, 5, 7)  # the third document does not fit the budget
    # stream: 0 5 6 7 0 8 9 0 -> windows of 4 predicted tokens, EOS targets not scored
    assert d.inputs.tolist() == [[0, 5, 6, 7], [0, 8, 9, 0]]
    assert d.targets.tolist() == [[5, 6, 7, IGNORE], [8, 9, IGNORE, IGNORE]]


def test_bytes_are_utf8_bytes_not_characters():
    docs = {"d": [([5, 6], "é"), ([7], "π≈3"), ([8, 9, 10], "数据")]}
    (d,) = ValidationSet.from_documents(docs, eos_id=0, tokens_per_domain=100, seq_len=4).domains
    assert d.n_bytes == 2 + 6 + 6  # "é" is 2 bytes, "π≈3" 2 + 3 + 1, "数据" 3 + 3: characters would give 6


def test_every_source_of_a_domain_is_scored_with_equal_tokens(two_per_domain_corpus):
    """Two sources per domain: both contribute, each about half the domain's budget (the documented share)."""
    budget = 800
    vs = ValidationSet.from_manifest(two_per_domain_corpus, tokens_per_domain=budget, seq_len=64)
    rows = {r["source"]: r for r in list_sources(two_per_domain_corpus)}
    val_tokens = {}
    for sh in list_shards(two_per_domain_corpus, split="validation"):
        val_tokens[sh["source"]] = val_tokens.get(sh["source"], 0) + sh["n_tokens"]
    longest = 0
    for sh in list_shards(two_per_domain_corpus, split="validation"):
        import pyarrow.parquet as pq

        longest = max(
            longest, max(len(t) for t in pq.read_table(sh["abs_path"], columns=["tokens"])["tokens"].to_pylist())
        )
    assert {d.domain for d in vs.domains} == {"general", "code", "math"}
    for d in vs.domains:
        members = sorted(s for s in rows if rows[s]["domain"] == d.domain)
        assert list(d.sources) == members and len(members) == 2
        for source, n in zip(d.sources, d.source_tokens):
            share = min(budget // 2, val_tokens[source])
            assert 0 < n <= share and n > share - longest  # whole documents up to the equal share
        assert int((d.targets != IGNORE).sum()) == d.n_tokens == sum(d.source_tokens)
        scored = d.source_index[d.targets != IGNORE]
        assert [int((scored == i).sum()) for i in range(len(d.sources))] == list(d.source_tokens)
    again = ValidationSet.from_manifest(two_per_domain_corpus, tokens_per_domain=budget, seq_len=64)
    assert all(torch.equal(a.inputs, b.inputs) for a, b in zip(vs.domains, again.domains))  # seeded


def test_per_source_and_per_candidate_bpb(two_per_domain_corpus):
    from transformers import Qwen3ForCausalLM

    from proxy.evaluate import flat_metrics

    vs = ValidationSet.from_manifest(two_per_domain_corpus, tokens_per_domain=400, seq_len=64)
    torch.manual_seed(0)
    res = evaluate_model(Qwen3ForCausalLM(tiny_qwen3_config(vocab_size=384)), vs, batch_size=4)
    flat = flat_metrics(res)
    for d in vs.domains:
        r = res[d.domain]
        parts = r["sources"]
        assert set(parts) == set(d.sources)
        # the domain's nll is the sum of its sources', and its bpb their byte-weighted mean
        assert r["nll"] == pytest.approx(sum(p["nll"] for p in parts.values()), rel=1e-12)
        assert r["bpb"] == pytest.approx(sum(p["bpb"] * p["bytes"] for p in parts.values()) / r["bytes"], rel=1e-9)
        for source, p in parts.items():
            assert p["candidate"] == source and flat[f"bpb_candidate/{source}"] == pytest.approx(p["bpb"])
            assert flat[f"bpb_source/{source}"] == pytest.approx(p["bpb"])


def test_validation_set_follows_manifest(tiny_corpus, vset):
    domains = {s["domain"] for s in list_sources(tiny_corpus)}
    assert set(vset.domain_names) == domains
    for d in vset.domains:
        assert 0 < d.n_tokens <= 600
        assert int((d.targets != IGNORE).sum()) == d.n_tokens
        assert d.inputs.shape[1] == 64
    assert list_shards(tiny_corpus, split="validation")


def test_uniform_model_bpb_by_hand(vset):
    from transformers import Qwen3ForCausalLM

    model = Qwen3ForCausalLM(tiny_qwen3_config(vocab_size=384))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()  # zero embeddings -> zero hidden states -> zero logits -> uniform over 384 tokens
    res = evaluate_model(model, vset, batch_size=4)
    for d in vset.domains:
        assert res[d.domain]["loss"] == pytest.approx(math.log(384), rel=1e-6)
        assert res[d.domain]["bpb"] == pytest.approx(d.n_tokens * math.log(384) / math.log(2) / d.n_bytes, rel=1e-6)


def test_evaluation_deterministic(components, vset):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(components / "general"))
    a = evaluate_model(model, vset, batch_size=3)
    b = evaluate_model(model, vset, batch_size=8)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k]["loss"] == pytest.approx(b[k]["loss"], rel=1e-6)
    assert evaluate_model(model, vset, batch_size=3) == a


def test_cli_evaluate(components, tiny_corpus, tmp_path, capsys):
    args = ["evaluate", "--db", str(tiny_corpus), "--tokens-per-domain", "300", "--seq-len", "32", "--json"]
    assert main(args + ["--model", str(components / "code")]) == 0
    one = json.loads(capsys.readouterr().out)
    assert set(one["domains"]) == {"general", "code", "math"} and one["mean_bpb"] > 0
    mix = tmp_path / "mix.json"
    mix.write_text(
        json.dumps(
            {"name": "m", "level": "candidate", "ratios": {"general": 0, "code": 1, "math": 0}, "provenance": {}}
        )
    )
    assert main(args + ["--components", str(components), "--mixture", str(mix)]) == 0
    two = json.loads(capsys.readouterr().out)
    assert two["domains"]["code"]["bpb"] == pytest.approx(one["domains"]["code"]["bpb"], rel=1e-6)
    assert main(["evaluate", "--db", str(tiny_corpus)]) == 2


def test_merged_folder_is_a_working_hf_model(components, vset, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from proxy.merge import merge_to_folder
    from proxy.proxies import ProxyFactory

    ratios = {"general": 0.6, "code": 0.3, "math": 0.1}
    out = merge_to_folder(components, ratios, tmp_path / "merged")
    assert AutoTokenizer.from_pretrained(str(out)).convert_tokens_to_ids("<|endoftext|>") is not None
    on_disk = evaluate_model(AutoModelForCausalLM.from_pretrained(str(out)), vset)
    in_memory = evaluate_model(ProxyFactory(components, device="cpu").proxy(ratios), vset)
    for d in on_disk:
        assert on_disk[d]["bpb"] == pytest.approx(in_memory[d]["bpb"], rel=1e-5)
