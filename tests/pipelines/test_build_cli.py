"""The build-corpus CLI: exit codes, nothing done on a bad recipe, --json summary, --help examples."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pipeline_inputs import make_inputs, write_recipe

from corpus import RecipeError
from pipelines.build_config import BuildError, out_location
from pipelines.build_corpus import RecipeRefused, main


def test_bad_recipe_stops_before_any_work(tmp_path, capsys):
    data = make_inputs(tmp_path)
    data["sources"][1]["tier"] = "hgh"
    recipe = write_recipe(tmp_path, data)
    out = tmp_path / "out"
    assert main(["--recipe", str(recipe), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "sources[1].tier" in err and "'hgh'" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize(
    "section,value,expected",
    [
        ("dedup", {"ngram": 0}, "dedup.ngram: 0: expected an integer >= 1"),
        ("dedup", {"threshold": 7}, "dedup.threshold: 7: expected a number in (0, 1]"),
        ("dedup", {"ngram": "thirteen"}, "dedup.ngram: 'thirteen': expected an integer"),
        ("decontamination", {"enabled": "no"}, "decontamination.enabled: 'no': expected true or false"),
        ("language", {"languages": 7}, "language.languages: 7: expected a list of strings"),
        ("stages", [{"name": "1", "target": "1,5T"}], "stages[0].target: '1,5T': a comma may only separate thousands"),
        ("stages", [{"name": "1", "target": "1e400"}], "stages[0].target: '1e400': more than"),
        ("colour", "red", "colour: unknown key; allowed keys are name,"),
    ],
)
def test_bad_recipe_section_exits_2_in_one_line_before_out_exists(tmp_path, capsys, section, value, expected):
    data = make_inputs(tmp_path)
    data[section] = value
    out = tmp_path / "out"
    assert main(["--recipe", str(write_recipe(tmp_path, data)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[-1].startswith(f"build-corpus: error: {tmp_path / 'recipe.yaml'}: {expected}"), err
    assert len(lines) <= 2 and "Traceback" not in err  # the error, and at most a one-line usage
    assert not out.exists()


@pytest.mark.parametrize(
    "flag,value",
    [("--tasks", "0"), ("--workers", "-1"), ("--limit", "many"), ("--cpus-per-task", "0"), ("--executor", "spark")],
)
def test_bad_flag_exits_2_before_out_exists(tmp_path, capsys, flag, value):
    recipe = write_recipe(tmp_path, make_inputs(tmp_path))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        main(["--recipe", str(recipe), "--out", str(out), flag, value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and repr(value).strip("'") in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("url", ["nosuch://bucket/corpus", "hf://datasets/me/corpus", "file://rel"])
def test_unusable_url_out_is_refused_at_parse_time(tmp_path, capsys, monkeypatch, url):
    recipe = write_recipe(tmp_path, make_inputs(tmp_path))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    assert main(["--recipe", str(recipe), "--out", url]) == 2
    err = capsys.readouterr().err
    assert f"--out: {url!r}:" in err and "Traceback" not in err
    assert list((tmp_path / "cwd").iterdir()) == []  # no local folder named `s3:`


def test_out_location_takes_paths_and_installed_protocols(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert out_location("out/demo") == str(tmp_path / "out" / "demo")
    assert out_location("file:///data/corpus") == "/data/corpus"
    assert out_location("memory://bucket/corpus/") == "memory://bucket/corpus"
    with pytest.raises(BuildError, match="fsspec knows no protocol 'nosuch'"):
        out_location("nosuch://bucket/corpus")
    with pytest.raises(BuildError, match="one commit per file|as a commit"):
        out_location("hf://datasets/me/corpus")
    with pytest.raises(BuildError, match="expected a folder path"):
        out_location("")


def test_a_protocol_whose_package_is_missing_is_named(monkeypatch):
    import fsspec

    def missing(protocol):
        raise ImportError("Install s3fs to access S3")

    monkeypatch.setattr(fsspec, "get_filesystem_class", missing)
    with pytest.raises(BuildError, match="--out: 's3://bucket/corpus': Install s3fs"):
        out_location("s3://bucket/corpus")


def test_unusable_out_and_missing_recipe_are_one_line(tmp_path, capsys):
    recipe = write_recipe(tmp_path, make_inputs(tmp_path))
    (tmp_path / "file").write_text("x")
    assert main(["--recipe", str(recipe), "--out", str(tmp_path / "file"), "--sources", "math"]) == 1
    err = capsys.readouterr().err
    assert "exists and is not a folder" in err and "Traceback" not in err
    assert main(["--recipe", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "nope.yaml: recipe file not found" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_debug_shows_the_traceback(tmp_path):
    data = make_inputs(tmp_path)
    data["dedup"] = {"ngram": 0}
    with pytest.raises(RecipeRefused, match="dedup.ngram") as err:
        main(["--recipe", str(write_recipe(tmp_path, data)), "--out", str(tmp_path / "out"), "--debug"])
    assert isinstance(err.value.__cause__, RecipeError)
    assert not (tmp_path / "out").exists()


def test_bad_selection_and_filter_params_exit_2(tmp_path, capsys):
    data = make_inputs(tmp_path)
    recipe = write_recipe(tmp_path, data)
    assert main(["--recipe", str(recipe), "--out", str(tmp_path / "o1"), "--sources", "web,nope"]) == 2
    assert "'nope'" in capsys.readouterr().err
    data["sources"][0]["params"] = {"filter_params": {"gopher": {}}}
    recipe = write_recipe(tmp_path, data)
    assert main(["--recipe", str(recipe), "--out", str(tmp_path / "o2")]) == 2
    assert "unknown filter" in capsys.readouterr().err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_json_summary_and_script_entry(tmp_path):
    data = make_inputs(tmp_path)
    data["sources"] = [s for s in data["sources"] if s["name"] in ("math", "code")]
    recipe = write_recipe(tmp_path, data)
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "pipelines/build_corpus.py",
            "--recipe",
            str(recipe),
            "--out",
            str(out),
            "--tasks",
            "1",
            "--workers",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert set(summary["domains"]) == {"math", "code"}
    assert summary["train_tokens"] == sum(s["train_tokens"] for s in summary["sources"].values()) > 0
    assert summary["tokenizer"]["vocab_size"] == "320"


def test_help_shows_examples(capsys):
    try:
        main(["--help"])
    except SystemExit as e:
        assert e.code == 0
    assert "examples:" in capsys.readouterr().out
