"""The `mixer` CLI: resolve/sample outputs, JSON mode, exit codes, errors that name the field."""

from __future__ import annotations

import json

import pytest

from mixer import Mixture, Plan
from mixer.cli import main


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "mixer resolve --recipe" in capsys.readouterr().out


def test_resolve_recipe_json_and_units(tmp_path, capsys):
    assert (
        main(
            [
                "resolve",
                "--recipe",
                "corpus/recipes/demix_corpora.yaml",
                "--target",
                "22T",
                "--json",
                "--out",
                str(tmp_path / "a.json"),
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["target_tokens"] == 22 * 10**12 == sum(s["allotted_tokens"] for s in data["sources"])
    assert (
        main(
            [
                "resolve",
                "--recipe",
                "corpus/recipes/demix_corpora.yaml",
                "--target",
                "22000B",
                "--out",
                str(tmp_path / "b.json"),
            ]
        )
        == 0
    )
    assert Plan.load(tmp_path / "a.json").plan_id == Plan.load(tmp_path / "b.json").plan_id
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["resolve", "--recipe", "corpus/recipes/demix_corpora.yaml", "--target", "22X"])
    assert e.value.code == 2 and "22X" in capsys.readouterr().err


def test_resolve_mixture_records_and_refuses_overwrite(corpus_copy, tmp_path, capsys):
    mix = tmp_path / "best.json"
    mix.write_text(
        json.dumps({"name": "best", "level": "domain", "ratios": {"general": 0.6, "code": 0.2, "math": 0.2}})
    )
    out = tmp_path / "plan.json"
    args = [
        "resolve",
        "--mixture",
        str(mix),
        "--db",
        str(corpus_copy),
        "--target",
        "50K",
        "--seq-len",
        "64",
        "--out",
        str(out),
    ]
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
    best = tmp_path / "best.json"
    Mixture.from_dict({"name": "best", "level": "domain", "ratios": {"general": 0.6, "code": 0.2, "math": 0.2}}).save(
        best
    )
    assert (
        main(["resolve", "--mixture", str(best), "--db", str(corpus_copy), "--target", "1M", "--max-epochs", "1"]) == 1
    )
    err = capsys.readouterr().err
    assert "target 1M exceeds --max-epochs 1 for" in err and "The largest feasible target is" in err, err


RECIPE = "corpus/recipes/demix_corpora.yaml"
BAD_INPUT = [  # (id, argv with {placeholders}, exit code, what stderr must name)
    ("target-decimal-comma", "resolve --recipe {recipe} --target 1,5T", 2, "1,5T"),
    ("target-inf", "resolve --recipe {recipe} --target inf", 2, "inf"),
    ("target-nan", "resolve --recipe {recipe} --target nan", 2, "nan"),
    ("target-1e400", "resolve --recipe {recipe} --target 1e400", 2, "1e400"),
    ("target-negative", "resolve --recipe {recipe} --target -3", 2, "-3"),
    ("target-word", "resolve --recipe {recipe} --target abc", 2, "abc"),
    ("target-zero", "resolve --recipe {recipe} --target 0", 2, "'0'"),
    ("seq-len-zero", "resolve --recipe {recipe} --target 1M --seq-len 0", 2, "--seq-len: '0'"),
    ("seq-len-word", "resolve --recipe {recipe} --target 1M --seq-len abc", 2, "--seq-len: 'abc'"),
    ("seed-negative", "resolve --recipe {recipe} --target 1M --seed -1", 2, "--seed: '-1'"),
    ("max-epochs-zero", "resolve --recipe {recipe} --target 1M --max-epochs 0", 2, "--max-epochs: '0'"),
    ("max-epochs-inf", "resolve --recipe {recipe} --target 1M --max-epochs inf", 2, "--max-epochs: 'inf'"),
    ("general-share-out-of-range", "resolve --mixture {mix} --db {db} --target 1M --general-share 1.5", 2, "'1.5'"),
    (
        "general-share-and-as-is",
        "resolve --mixture {mix} --db {db} --target 1M --general-share 0.5 --as-is",
        2,
        "not allowed with",
    ),
    ("general-share-with-recipe", "resolve --recipe {recipe} --target 1M --general-share 0.5", 2, "--mixture only"),
    ("n-negative", "sample --plan {plan} --n -1", 2, "--n: '-1'"),
    ("start-word", "sample --plan {plan} --start abc", 2, "--start: 'abc'"),
    ("sample-seq-len-zero", "sample --plan {plan} --seq-len 0", 2, "--seq-len: '0'"),
    ("cap-negative", "release --plan {plan} --out {tmp}/rel --mixture-max-tokens -3", 2, "-3"),
    ("mixture-key-unknown", "resolve --mixture {unknown_key} --db {db} --target 1M", 1, "ratios.poetry"),
    ("plan-source-escapes", "release --plan {escaped} --out {tmp}/rel", 1, "sources[0].source: '../../escaped'"),
    ("sample-source-escapes", "sample --plan {escaped}", 1, "sources[0].source: '../../escaped'"),
    ("recipe-missing", "resolve --recipe {tmp}/nope.yaml --target 1M", 1, "nope.yaml"),
    ("mixture-missing", "resolve --mixture {tmp}/nope.json --db {db} --target 1M", 1, "nope.json"),
    ("plan-missing", "sample --plan {tmp}/nope.json", 1, "nope.json"),
    ("db-missing", "resolve --mixture {mix} --db {tmp}/nowhere --target 1M", 1, "nowhere"),
    ("db-not-duckdb", "resolve --mixture {mix} --db {binary} --target 1M", 1, "binary.bin"),
    ("plan-binary", "sample --plan {binary}", 1, "binary.bin"),
    ("sample-plan-too-small", "sample --plan {plan} --seq-len 1000000000", 2, "less than one sequence"),
    ("stage-unknown", "resolve --recipe {recipe} --target 1M --stage nosuch", 1, "no stage 'nosuch'"),
    ("mixture-binary", "resolve --mixture {binary} --db {db} --target 1M", 1, "binary.bin"),
    ("plan-is-a-folder", "sample --plan {tmp}", 1, "{tmp}"),
    ("release-plan-is-a-folder", "release --plan {tmp} --out {tmp}/rel", 1, "{tmp}"),
    ("recipe-is-a-folder", "resolve --recipe {tmp} --target 1M", 1, "{tmp}"),
    ("mixture-is-a-folder", "resolve --mixture {tmp} --db {db} --target 1M", 1, "{tmp}"),
    ("out-is-a-folder", "resolve --recipe {recipe} --target 1M --out {tmp}", 1, "is a folder"),
    ("release-out-is-a-file", "release --plan {plan} --out {plan}", 1, "is a file"),
    ("plan-a-list", "sample --plan {a_list}", 1, "list.json: expected a JSON object"),
    ("plan-sources-not-a-list", "sample --plan {sources_str}", 1, "sources: expected a list"),
    ("plan-stages-a-number", "release --plan {stages_num} --out {tmp}/rel", 1, "stages: expected a list"),
    ("plan-without-corpus", "sample --plan {recipe_plan}", 1, "eos_id is null"),
    ("corpus-empty-folder", "resolve --mixture {mix} --db {tmp}/empty --target 1M", 1, "no manifest here"),
    ("corpus-no-sources", "resolve --mixture {mix} --db {empty_corpus} --target 1M", 1, "no domain 'general'"),
]


@pytest.fixture()
def bad_inputs(tmp_path, corpus_copy, tiny_plan):
    """Files for BAD_INPUT, each written by the library's own writers (then edited where a case needs it)."""
    from manifests import open_manifest

    mix = tmp_path / "mix.json"
    Mixture.from_dict({"name": "m", "level": "domain", "ratios": {"general": 0.5, "code": 0.5}}).save(mix)
    unknown = tmp_path / "unknown.json"
    Mixture.from_dict({"name": "u", "level": "domain", "ratios": {"general": 0.5, "poetry": 0.5}}).save(unknown)
    plan = tmp_path / "plan.json"
    tiny_plan.save(plan)

    def edited(name, **change):
        d = tiny_plan.to_dict()
        d.pop("plan_id")
        for key, value in change.items():
            d[key] = value
        (tmp_path / name).write_text(json.dumps(d))
        return tmp_path / name

    sources = tiny_plan.to_dict()["sources"]
    escaped = edited("escaped.json", sources=[{**sources[0], "source": "../../escaped"}, *sources[1:]])
    (tmp_path / "binary.bin").write_bytes(b"\xff\xfe\x00\x81 not text")
    (tmp_path / "list.json").write_text("[]")
    (tmp_path / "empty").mkdir()
    open_manifest(tmp_path / "empty_corpus").close()
    recipe_plan = tmp_path / "recipe_plan.json"
    assert main(["resolve", "--recipe", RECIPE, "--target", "1M", "--out", str(recipe_plan), "--json"]) == 0
    return {
        "tmp": tmp_path,
        "db": corpus_copy,
        "mix": mix,
        "unknown_key": unknown,
        "plan": plan,
        "escaped": escaped,
        "binary": tmp_path / "binary.bin",
        "a_list": tmp_path / "list.json",
        "sources_str": edited("sources_str.json", sources="gen_a"),
        "stages_num": edited("stages.json", stages=5),
        "recipe_plan": recipe_plan,
        "empty_corpus": tmp_path / "empty_corpus",
        "recipe": RECIPE,
    }


@pytest.mark.parametrize("argv, code, names", [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT])
def test_bad_input_prints_one_line_without_a_traceback(bad_inputs, capsys, argv, code, names):
    capsys.readouterr()
    args = [a.format(**bad_inputs) for a in argv.split()]
    try:
        rc = main(args)
    except SystemExit as e:  # argparse refuses a bad value itself, with exit 2
        rc = e.code
    err = capsys.readouterr().err
    assert rc == code, err
    assert "Traceback" not in err and names.format(**bad_inputs) in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and len(err.splitlines()) <= 8, err  # one error line (after argparse's usage lines)


def test_resolve_materialises_a_searched_mixture_and_warns_without_provenance(corpus_copy, tmp_path, capsys):
    searched = tmp_path / "best.json"
    Mixture(
        "best",
        "candidate",
        {"code_high": 1.0},
        provenance={"general_share": 0.5, "general": {"level": "domain", "ratios": {"general": 1.0}}},
    ).save(searched)
    assert main(["resolve", "--mixture", str(searched), "--db", str(corpus_copy), "--target", "100K", "--json"]) == 0
    out = capsys.readouterr()
    shares = {s["source"]: s["share"] for s in json.loads(out.out)["sources"]}
    assert shares["code_a"] == pytest.approx(0.5) and "warning" not in out.err
    bare = tmp_path / "bare.json"
    Mixture("bare", "candidate", {"code_high": 1.0}).save(bare)
    assert main(["resolve", "--mixture", str(bare), "--db", str(corpus_copy), "--target", "100K", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["sources"][0]["share"] == 1.0
    assert "mixer: warning: <bare>: provenance.general_share is missing" in out.err
    assert (
        main(["resolve", "--mixture", str(searched), "--db", str(corpus_copy), "--target", "100K", "--as-is", "--json"])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["sources"][0]["share"] == 1.0
