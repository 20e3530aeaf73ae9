"""Release: sample-<N> configs are exact prefixes of the sampler's stream; a killed release resumes without rewriting."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

import mixer.release as release
from mixer import Sampler
from mixer.cli import main
from mixer.release import list_release, write_release


def test_sample_config_rows_are_the_samplers_first_sequences(tiny_plan, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    out = tmp_path / "rel"
    L = tiny_plan.seq_len
    files = write_release(tiny_plan, str(out), mixture_max_tokens=3_000, samples=[10_000, 1_000], file_tokens=20 * L)
    assert sum(f.path.startswith("data/sample-10K/") for f in files) == 16  # 312 sequences, 20 per file
    expected = [(slot, src, k, seq.tolist()) for slot, src, k, seq in Sampler(tiny_plan, prefetch=0).items()]
    for name, n in (("sample-10K", 10_000 // L), ("sample-1K", 1_000 // L)):
        ds = datasets.load_dataset(
            str(out), name, split="train", cache_dir=str(tmp_path / "hf-cache")
        )  # no stale cache
        got = list(zip(ds["position"], ds["source"], ds["k"], ds["tokens"]))
        assert len(got) == n and got == expected[:n]
    assert "sample-10K" in (out / "README.md").read_text()


def test_cli_release_with_samples(tiny_plan, tmp_path, capsys):
    tiny_plan.save(tmp_path / "plan.json")
    assert (
        main(
            [
                "release",
                "--plan",
                str(tmp_path / "plan.json"),
                "--out",
                str(tmp_path / "rel"),
                "--samples",
                "2K,4K",
                "--mixture-max-tokens",
                "2K",
                "--json",
            ]
        )
        == 0
    )
    paths = {f.path for f in list_release(str(tmp_path / "rel"))}
    assert {"data/sample-2K/train-00000.parquet", "data/sample-4K/train-00000.parquet"} <= paths


def test_a_killed_release_resumes_without_rewriting_finished_files(tiny_plan, tmp_path, monkeypatch):
    L = tiny_plan.seq_len
    kwargs = dict(mixture_max_tokens=6_000, samples=[2_000], file_tokens=40 * L)
    whole = tmp_path / "whole"
    write_release(tiny_plan, str(whole), **kwargs)

    calls = {"n": 0}
    real = release.write_mixture_file

    def killed_after_two(*a, **k):
        if calls["n"] == 2:
            raise KeyboardInterrupt  # as a kill in the middle of the third mixture file
        calls["n"] += 1
        return real(*a, **k)

    out = tmp_path / "rel"
    monkeypatch.setattr(release, "write_mixture_file", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        write_release(tiny_plan, str(out), **kwargs)
    done = {p.relative_to(out): p.stat().st_mtime_ns for p in out.rglob("*.parquet")}
    assert len([p for p in done if p.parts[1] == "mixture"]) == 2 and not (out / "README.md").exists()
    assert not [p for p in out.rglob(".tmp-*")]  # no half file under any name

    monkeypatch.setattr(release, "write_mixture_file", real)
    write_release(tiny_plan, str(out), **kwargs)
    after = {p.relative_to(out): p.stat().st_mtime_ns for p in out.rglob("*.parquet")}
    assert all(after[p] == t for p, t in done.items())  # finished files were not rewritten
    assert sorted(after) == sorted(p.relative_to(whole) for p in whole.rglob("*.parquet"))
    for p in after:  # and the resumed release equals an uninterrupted one
        assert pq.read_table(out / p).equals(pq.read_table(whole / p)), p
    assert (out / "README.md").read_text() == (whole / "README.md").read_text()
