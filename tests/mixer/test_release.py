"""Release: a Hugging Face dataset folder that `datasets` loads offline; fsspec URLs; the marker; a dry run."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import fsspec
import pyarrow.parquet as pq
import pytest
import yaml

from mixer import Plan, PlanError, Sampler
from mixer.cli import main
from mixer.release import ReleaseError, write_release


@pytest.fixture(scope="module")
def release_dir(tiny_plan, tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "ds"
    write_release(tiny_plan, str(out))
    return out


def test_release_loads_with_datasets(release_dir, tiny_plan, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    sampler = Sampler(tiny_plan)
    for s, n_seq in zip(tiny_plan.sources, sampler.sequence_counts):
        ds = datasets.load_dataset(str(release_dir), s.source, split="train", cache_dir=str(tmp_path))
        assert set(ds.column_names) >= {"id", "text", "tokens", "n_tokens"}
        assert len(set(ds["id"])) == len(ds)  # each document once, however many epochs
        if s.epochs >= 1.02:  # the stream (with one EOS per document) covers a whole epoch
            assert len(ds) == s.n_docs
        else:
            assert 0 < len(ds) < s.n_docs
            assert abs(sum(ds["n_tokens"]) + len(ds) - n_seq * tiny_plan.seq_len) <= max(ds["n_tokens"]) + 1
    mix = datasets.load_dataset(str(release_dir), "mixture", split="train", cache_dir=str(tmp_path))
    by_source = Counter(mix["source"])
    assert set(by_source) == {s.source for s in tiny_plan.sources}
    tokens = Counter()
    for src, n in zip(mix["source"], mix["n_tokens"]):
        tokens[src] += n + 1
    for s in tiny_plan.sources:  # the mixture config follows the plan's token split
        assert abs(tokens[s.source] - s.allotted_tokens) < 0.05 * s.allotted_tokens + 200
    default = datasets.load_dataset(str(release_dir), split="train", cache_dir=str(tmp_path))
    assert len(default) == len(mix)


def test_card_has_configs_and_ratio_table(release_dir, tiny_plan):
    text = (release_dir / "README.md").read_text()
    header = yaml.safe_load(text.split("---")[1])
    names = {c["config_name"] for c in header["configs"]}
    assert names == {"mixture", *(s.source for s in tiny_plan.sources)}
    assert header["license"] and header["language"] == ["en"] and header["size_categories"]
    assert tiny_plan.plan_id in text and tiny_plan.config_hash in text and "epochs" in text
    for s in tiny_plan.sources:
        assert f"| {s.source} | {s.domain} |" in text and f"{s.allotted_tokens:,}" in text
    assert (release_dir / "tokenizer" / "tokenizer.json").exists()


def test_release_to_memory_url(tiny_plan):
    out = "memory://releases/tiny"
    files = write_release(tiny_plan, out, mixture_max_tokens=10_000)
    paths = {f.path for f in files}
    assert "README.md" in paths and "data/mixture/train-00000.parquet" in paths
    fs = fsspec.filesystem("memory")
    with fs.open("/releases/tiny/data/mixture/train-00000.parquet", "rb") as f:
        table = pq.read_table(f)
    assert (
        0 < sum(table.column("n_tokens").to_pylist()) + table.num_rows <= 10_000 + 4 * 200
    )  # whole documents: each source may run one document past the cap
    assert "a prefix" in fs.cat("/releases/tiny/README.md").decode()
    with pytest.raises(ReleaseError, match="not empty"):
        write_release(tiny_plan, out)
    fs.rm("/releases", recursive=True)


# The dry run (nothing written, the Hub not contacted, the commit plan) is tested in test_release_push.py.


def test_overwrite_refuses_a_folder_no_release_wrote(tiny_plan, tmp_path, monkeypatch, capsys):
    user = tmp_path / "work"
    user.mkdir()
    (user / "thesis.tex").write_text("years of work")
    with pytest.raises(ReleaseError, match=r"work: is not empty and holds no \.demix-release\.json"):
        write_release(tiny_plan, str(user), mixture_max_tokens=2_000, overwrite=True)
    assert (user / "thesis.tex").read_text() == "years of work" and sorted(p.name for p in user.iterdir()) == [
        "thesis.tex"
    ]
    tiny_plan.save(tmp_path / "plan.json")
    monkeypatch.chdir(user)  # the mistyped `--out .`
    assert main(["release", "--plan", str(tmp_path / "plan.json"), "--out", ".", "--overwrite"]) == 1
    assert "holds no .demix-release.json" in capsys.readouterr().err
    assert sorted(p.name for p in user.iterdir()) == ["thesis.tex"]


def test_overwrite_replaces_a_previous_release_only(tiny_plan, epoch_plan, tmp_path):
    out = tmp_path / "rel"
    write_release(tiny_plan, str(out), mixture_max_tokens=2_000)
    assert json.loads((out / ".demix-release.json").read_text())["plan_id"] == tiny_plan.plan_id
    (out / ".gitattributes").write_text("*.parquet filter=lfs\n")  # a Hub clone's own file
    with pytest.raises(ReleaseError, match="pass --overwrite"):
        write_release(epoch_plan, str(out), mixture_max_tokens=2_000)
    write_release(epoch_plan, str(out), mixture_max_tokens=2_000, overwrite=True)
    assert json.loads((out / ".demix-release.json").read_text())["plan_id"] == epoch_plan.plan_id
    assert sorted(p.name for p in (out / "data").iterdir()) == sorted(
        ["mixture", *(s.source for s in epoch_plan.sources)]
    )
    assert (out / ".gitattributes").read_text() == "*.parquet filter=lfs\n"


def test_plan_refuses_a_source_name_that_leaves_the_folder(tiny_plan, tmp_path):
    d = tiny_plan.to_dict()
    d.pop("plan_id")
    d["sources"][1]["source"] = "../../escaped"
    with pytest.raises(PlanError, match=r"p\.json: sources\[1\]\.source: '\.\./\.\./escaped' must use letters"):
        Plan.from_dict(d, file="p.json")
    bad = dataclasses.replace(
        tiny_plan, sources=(dataclasses.replace(tiny_plan.sources[0], source="../escaped"), *tiny_plan.sources[1:])
    )
    with pytest.raises(PlanError, match="escaped"):  # a Plan built in code is checked too, before any write
        write_release(bad, str(tmp_path / "rel"))
    assert not (tmp_path / "rel").exists() and not (tmp_path / "escaped").exists()
    d["sources"][1]["source"] = tiny_plan.sources[1].source
    d["sources"][1]["shards"][0]["path"] = "../../etc/passwd"
    with pytest.raises(PlanError, match=r"sources\[1\]\.shards\[0\]\.path: '\.\./\.\./etc/passwd'"):
        Plan.from_dict(d, file="p.json")


def test_card_yaml_quotes_names_yaml_would_misread(tiny_plan, tmp_path):
    renamed = dict(zip((s.source for s in tiny_plan.sources), ("null", "yes", "1e3", "a-b.c")))
    plan = dataclasses.replace(
        tiny_plan,
        sources=tuple(dataclasses.replace(s, source=renamed.get(s.source, s.source)) for s in tiny_plan.sources),
    )
    out = tmp_path / "rel"
    write_release(plan, str(out), mixture_max_tokens=2_000)
    header = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert [c["config_name"] for c in header["configs"]] == ["mixture", *(s.source for s in plan.sources)]
    assert all(isinstance(c["config_name"], str) for c in header["configs"])
