"""Benchmark suites: validation before any model loads, the offline suite through lm-eval, percentile combining."""

from __future__ import annotations

import os

import pytest

from proxy.suite import SuiteError, load_suite, parse_suite

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing in these tests may reach the network
os.environ["HF_DATASETS_OFFLINE"] = "1"

GOOD = {
    "name": "t",
    "combine": "mean_percentile",
    "build": "offline",
    "domains": {
        "code": [{"task": "offline_code_humaneval", "metric": "bpb", "direction": "lower"}],
        "math": [{"task": "offline_math_mc", "metric": "acc_norm", "direction": "higher"}],
    },
}


def _with(**changes):
    raw = {**GOOD, "domains": {k: [dict(t) for t in v] for k, v in GOOD["domains"].items()}}
    for key, value in changes.items():
        raw[key] = value
    return raw


def test_shipped_suites_load():
    offline, paper = load_suite("offline"), load_suite("demix_paper")
    assert set(offline.domains) == set(paper.domains) == {"general", "code", "math"}
    assert [t.task for t in paper.domains["general"]] == ["arc_easy", "hellaswag", "piqa", "siqa", "winogrande"]
    assert offline.build == "offline" and paper.build is None


@pytest.mark.parametrize(
    "raw, key",
    [
        (_with(domains={}), "domains"),
        ({k: v for k, v in GOOD.items() if k != "domains"}, "domains: is required"),
        (_with(domains={"code": [{"task": "offline_code_humaneval", "direction": "lower"}]}), "domains.code[0].metric"),
        (
            _with(domains={"code": [{"task": "offline_code_humaneval", "metric": "acc"}]}),
            "code[0].direction: metric .acc. needs",
        ),
        (_with(domains={"code": [{"task": "x", "metric": "m", "direction": "up"}]}), "domains.code[0].direction"),
        (
            _with(
                domains={
                    "code": [
                        {"task": "a", "metric": "bpb", "direction": "lower"},
                        {"task": "b", "metric": "acc", "direction": "higher"},
                    ]
                }
            ),
            "domains.code[1].direction",
        ),
        (_with(combine="mean"), "combine"),
        (
            _with(domains={"code": [{"task": "a", "metric": "bpb", "direction": "lower", "also": ["mystery"]}]}),
            "domains.code[0].also[0]",
        ),
        (_with(domains={"code": []}), "domains.code"),
        (_with(colour="red"), "colour"),
    ],
)
def test_bad_suite_names_the_key(raw, key):
    with pytest.raises(SuiteError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_suite(raw, "bad.yaml")


def test_unknown_task_refused_before_any_model(tmp_path):
    from proxy.benchmarks import prepare_suite

    suite = parse_suite(
        _with(
            domains={
                "code": [{"task": "offline_code_humaneval", "metric": "bpb", "direction": "lower"}],
                "math": [{"task": "offline_maths_typo", "metric": "acc", "direction": "higher"}],
            }
        ),
        "typo.yaml",
    )
    with pytest.raises(SuiteError, match=r"domains\.math\[0\]\.task: 'offline_maths_typo'"):
        prepare_suite(suite, tmp_path / "cache")


def test_missing_data_file_named(tmp_path):
    from proxy.benchmarks import prepare_suite
    from proxy.offline_tasks import build_offline_tasks

    cache = build_offline_tasks(tmp_path / "cache", None)
    (cache / "offline_math_mc.jsonl").unlink()
    with pytest.raises(SuiteError, match=r"offline_math_mc\.jsonl: file not found"):
        prepare_suite(parse_suite(GOOD, "t.yaml"), cache)


def test_general_cloze_needs_db(tmp_path):
    from proxy.benchmarks import prepare_suite

    with pytest.raises(SuiteError, match="pass --db"):
        prepare_suite(load_suite("offline"), tmp_path / "cache", db=None)


def test_mean_percentile_hand_case():
    """Three proxies, two domains: general higher-is-better, code lower-is-better (bpb)."""
    suite = parse_suite(
        {
            "name": "h",
            "domains": {
                "general": [{"task": "g", "metric": "acc", "direction": "higher"}],
                "code": [{"task": "c", "metric": "bpb", "direction": "lower"}],
            },
        },
        "h.yaml",
    )
    rows = [
        {"suite/general": 0.30, "suite_loss/code": 2.0},  # general worst (0), code middle (0.5)
        {"suite/general": 0.50, "suite_loss/code": 1.0},  # general best (1), code best (1)
        {"suite/general": 0.40, "suite_loss/code": 3.0},
    ]  # general middle (0.5), code worst (0)
    assert suite.combined(rows) == pytest.approx([0.25, 1.0, 0.25])
    tied = [{"suite/general": 0.5, "suite_loss/code": 1.0}] * 2 + [{"suite/general": 0.1, "suite_loss/code": 9.0}]
    assert suite.combined(tied) == pytest.approx([0.75, 0.75, 0.0])


def test_domain_score_is_mean_of_its_tasks():
    suite = parse_suite(
        {
            "name": "m",
            "combine": "mean",
            "domains": {
                "general": [
                    {"task": "a", "metric": "acc", "direction": "higher"},
                    {"task": "b", "metric": "acc_norm", "direction": "higher", "also": ["acc"]},
                ]
            },
        },
        "m.yaml",
    )
    cols = suite.scores({"a": {"acc": 0.2}, "b": {"acc_norm": 0.6, "acc": 0.5}})
    assert cols == {"acc/a": 0.2, "acc_norm/b": 0.6, "acc/b": 0.5, "suite/general": pytest.approx(0.4)}
    assert suite.combined([cols]) == pytest.approx([0.4])


def test_math_questions_seen_in_training_are_dropped():
    import pyarrow as pa

    from proxy.offline_tasks import drop_seen_in_training, math_rows

    rows = math_rows(5, seed=3)
    assert rows == math_rows(5, seed=3) and rows != math_rows(5, seed=4)
    texts = [pa.array(["unrelated", f"... {rows[2]['question']} It is easy."])]
    kept, dropped = drop_seen_in_training(rows, texts)
    assert dropped == 1 and rows[2] not in kept and len(kept) == 4


@pytest.fixture(scope="module")
def offline_setup(tiny_corpus, tmp_path_factory):
    from transformers import AutoTokenizer

    from proxy.benchmarks import prepare_suite
    from proxy.synthetic import tiny_qwen3_config, write_synthetic_components

    tok = AutoTokenizer.from_pretrained(str(tiny_corpus / "tokenizer"))
    comps = write_synthetic_components(
        tmp_path_factory.mktemp("suite_comps"),
        ["general", "code_a"],
        tiny_qwen3_config(vocab_size=len(tok), eos_id=tok.eos_token_id),
        noise=0.05,
        tokenizer_dir=tiny_corpus / "tokenizer",
        db=str(tiny_corpus),
    )
    prepared = prepare_suite(load_suite("offline"), tmp_path_factory.mktemp("suite_cache"), db=tiny_corpus)
    return comps, tok, prepared


def test_offline_suite_runs_through_lm_eval_and_one_hot_equals_component(offline_setup):
    import json

    import torch
    from transformers import AutoModelForCausalLM

    from proxy.benchmarks import SuiteRunner
    from proxy.proxies import ProxyFactory

    comps, tok, prepared = offline_setup
    stamp = json.loads((prepared.include_path / "offline.json").read_text())
    assert stamp["math_in_training"] == 0 and stamp["rows"]["offline_general_cloze"] >= 4
    assert stamp["rows"]["offline_code_humaneval"] == 164
    factory = ProxyFactory(comps, device="cpu")
    runner = SuiteRunner(prepared, factory.model, tok, batch_size=8, limit=6)
    factory.proxy({"general": 0.0, "code_a": 1.0})
    one_hot = runner.score()
    mixed = (factory.proxy({"general": 0.5, "code_a": 0.5}), runner.score())[1]
    component = AutoModelForCausalLM.from_pretrained(str(comps / "code_a"), dtype=torch.float32).eval()
    direct = SuiteRunner(prepared, component, tok, batch_size=8, limit=6).score()
    expected = {
        "bpb_task/offline_general_cloze",
        "acc_norm/offline_general_cloze",
        "acc/offline_general_cloze",
        "bpb_task/offline_code_humaneval",
        "bpb_task/offline_math_mc",
        "acc_norm/offline_math_mc",
        "acc/offline_math_mc",
        "suite_loss/general",
        "suite_loss/code",
        "suite_loss/math",
    }
    assert set(one_hot) == expected
    assert one_hot == pytest.approx(direct, rel=1e-5, abs=1e-6)
    assert mixed["bpb_task/offline_code_humaneval"] != pytest.approx(one_hot["bpb_task/offline_code_humaneval"])
    assert all(0.0 < one_hot[c] < 20.0 for c in expected if c.startswith(("bpb_task", "suite_loss")))


def test_search_with_suite_writes_scores_and_rerun_reuses_them(offline_setup, tiny_corpus, tmp_path, capsys):
    import json

    import pyarrow.parquet as pq

    from proxy.cli.main import main

    comps, _, prepared = offline_setup
    argv = [
        "search",
        "--components",
        str(comps),
        "--db",
        str(tiny_corpus),
        "--prior",
        "uniform",
        "--suite",
        "offline",
        "--objective",
        "suite",
        "--suite-cache",
        str(prepared.include_path),
        "--limit",
        "2",
        "--iterations",
        "1",
        "--per-iteration",
        "2",
        "--pool",
        "50",
        "--top-k",
        "2",
        "--predictor",
        "ridge",
        "--out",
        str(tmp_path / "s"),
        "--no-register",
        "--json",
    ]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    table = pq.read_table(tmp_path / "s" / "evaluated.parquet")
    for col in (
        "bpb_task/offline_code_humaneval",
        "acc_norm/offline_general_cloze",
        "suite_loss/general",
        "suite_loss/code",
        "suite_loss/math",
        "bpb/general",
    ):
        assert col in table.column_names
    rows = table.to_pylist()
    assert [r["objective"] for r in rows] == pytest.approx(
        [(r["suite_loss/general"] + r["suite_loss/code"] + r["suite_loss/math"]) / 3 for r in rows]
    )
    assert main(argv + ["--overwrite"]) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert second["reused_scores"] == first["n_evaluated"] and second["suite_seconds"] == 0.0
    assert second["best_objective"] == first["best_objective"]


def test_evaluate_cli_suite(offline_setup, tiny_corpus, tmp_path, capsys):
    import json

    from proxy.cli.main import main

    comps, _, prepared = offline_setup
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ndomains:\n  code:\n    - {task: offline_code_humaneval, metric: acc}\n")
    base = [
        "evaluate",
        "--model",
        str(comps / "code_a"),
        "--db",
        str(tiny_corpus),
        "--tokens-per-domain",
        "500",
        "--suite-cache",
        str(prepared.include_path),
        "--limit",
        "2",
        "--json",
    ]
    assert main(base + ["--suite", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml: domains.code[0].direction" in err and "Traceback" not in err
    assert main(base + ["--suite", "offline"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["suite"]["scores"]) >= {"suite_loss/general", "suite_loss/code", "suite_loss/math"}
