"""The `mixer` CLI: resolve/sample outputs, JSON mode, exit codes, errors that name the field."""
from __future__ import annotations

import json

import pytest

from mixer import Plan
from mixer.cli import main


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "mixer resolve --recipe" in capsys.readouterr().out


def test_resolve_recipe_json_and_units(tmp_path, capsys):
    assert main(["resolve", "--recipe", "corpus/recipes/demix_corpora.yaml", "--target", "22T", "--json",
                 "--out", str(tmp_path / "a.json")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["target_tokens"] == 22 * 10**12 == sum(s["allotted_tokens"] for s in data["sources"])
    assert main(["resolve", "--recipe", "corpus/recipes/demix_corpora.yaml", "--target", "22000B",
                 "--out", str(tmp_path / "b.json")]) == 0
    assert Plan.load(tmp_path / "a.json").plan_id == Plan.load(tmp_path / "b.json").plan_id
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["resolve", "--recipe", "corpus/recipes/demix_corpora.yaml", "--target", "22X"])
    assert e.value.code == 2 and "22X" in capsys.readouterr().err


def test_resolve_mixture_records_and_refuses_overwrite(corpus_copy, tmp_path, capsys):
    mix = tmp_path / "best.json"
    mix.write_text(json.dumps({"name": "best", "level": "domain", "ratios": {"general": 0.6, "code": 0.2, "math": 0.2}}))
    out = tmp_path / "plan.json"
    args = ["resolve", "--mixture", str(mix), "--db", str(corpus_copy), "--target", "50K", "--seq-len", "64", "--out", str(out)]
    assert main(args) == 0
    assert "allotted" in capsys.readouterr().out
    assert main(args) == 0  # the same plan again is fine
    assert main(args[:-4] + ["--target", "60K", "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["sample", "--plan", str(out), "--n", "2", "--decode"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("--- position") == 2 and "source" in printed
    assert main(["sample", "--plan", str(out), "--n", "3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [len(r["tokens"]) for r in rows] == [64, 64, 64]


def test_errors_name_the_field_and_exit_1(tmp_path, corpus_copy, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "b", "level": "domain", "ratios": {"general": 0.7, "code": 0.7}}))
    assert main(["resolve", "--mixture", str(bad), "--db", str(corpus_copy), "--target", "1M"]) == 1
    err = capsys.readouterr().err
    assert "bad.json: ratios: must sum to 1" in err and "Traceback" not in err
    bad.write_text(json.dumps({"target_tokens": 5}))
    assert main(["sample", "--plan", str(bad)]) == 1
    assert "bad.json: seed: is required" in capsys.readouterr().err
    assert main(["resolve", "--mixture", str(bad), "--target", "1M"]) == 2  # --mixture needs --db
    assert main(["resolve", "--mixture", str(tmp_path / "best.json"), "--db", str(corpus_copy), "--target", "1M",
                 "--max-epochs", "1"]) == 1
