"""An interrupted `proxy search` resumes from its journal: no proxy is scored twice, the answer is unchanged."""

from __future__ import annotations

import json
import shutil

import proxy.search_proxies as search_proxies
from proxy.cli.main import main
from proxy.synthetic import tiny_qwen3_config, write_synthetic_components


def _args(comps, corpus, out) -> list[str]:
    return [
        "search", "--components", str(comps), "--db", str(corpus), "--prior", "uniform", "--iterations", "2",
        "--per-iteration", "6", "--pool", "300", "--top-k", "8", "--tokens-per-domain", "200", "--seq-len", "32",
        "--predictor", "ridge", "--name", "t", "--out", str(out), "--json",
    ]  # fmt: skip


def test_interrupted_search_resumes_from_its_journal(tiny_corpus, tmp_path, capsys, monkeypatch):
    corpus = shutil.copytree(tiny_corpus, tmp_path / "corpus")
    comps = write_synthetic_components(
        tmp_path / "components", ["general", "code", "math"], tiny_qwen3_config(vocab_size=384),
        tokenizer_dir=corpus / "tokenizer", db=str(corpus / "manifest.duckdb"), noise=0.05,
    )  # fmt: skip
    assert main(_args(comps, corpus, tmp_path / "whole")) == 0
    whole = json.loads(capsys.readouterr().out)

    real, calls = search_proxies.evaluate_model, []

    def killed_after_four(*a, **k):
        if len(calls) == 4:
            raise KeyboardInterrupt  # Ctrl-C, or a job killed while the fifth proxy is scored
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(search_proxies, "evaluate_model", killed_after_four)
    out = tmp_path / "resumed"
    assert main(_args(comps, corpus, out)) == 1
    assert "interrupted; rerun the same command to resume" in capsys.readouterr().err
    journal = out / search_proxies.JOURNAL
    assert len(journal.read_text().splitlines()) == 4 and not (out / "evaluated.parquet").exists()
    with journal.open("a") as f:
        f.write('{"ratios": {"general": 0.')  # torn line of a write the kill cut short: ignored

    monkeypatch.setattr(search_proxies, "evaluate_model", real)
    assert main(_args(comps, corpus, out)) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["reused_scores"] == 4  # the four scored proxies are not evaluated again
    assert resumed["n_evaluated"] == whole["n_evaluated"]
    assert resumed["best_ratios"] == whole["best_ratios"] and resumed["best_objective"] == whole["best_objective"]
    assert not journal.exists()  # evaluated.parquet holds every score now
