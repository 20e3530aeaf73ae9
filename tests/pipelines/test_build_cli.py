"""The build-corpus CLI: exit codes, nothing done on a bad recipe, --json summary, --help examples."""
from __future__ import annotations

import json
import subprocess
import sys


from pipeline_inputs import make_inputs, write_recipe
from pipelines.build_corpus import main


def test_bad_recipe_stops_before_any_work(tmp_path, capsys):
    data = make_inputs(tmp_path)
    data["sources"][1]["tier"] = "hgh"
    recipe = write_recipe(tmp_path, data)
    out = tmp_path / "out"
    assert main(["--recipe", str(recipe), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "sources[1].tier" in err and "'hgh'" in err and "Traceback" not in err
    assert not out.exists()


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
    proc = subprocess.run([sys.executable, "pipelines/build_corpus.py", "--recipe", str(recipe), "--out", str(out),
                           "--tasks", "1", "--workers", "1", "--json"], capture_output=True, text=True, timeout=120)
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
