"""Rank consistency on known rankings: identical, reversed, a hand-computed case; file formats and CLI."""

from __future__ import annotations

import json

import polars as pl
import pytest

from proxy.cli.main import main
from proxy.validate import rank_consistency, read_scores


def table(values: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    names = [f"mix{i}" for i in range(len(next(iter(values.values()))))]
    return {n: {m: v[i] for m, v in values.items()} for i, n in enumerate(names)}


REF = table(
    {"bpb/general": [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7], "bpb/code": [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2]}
)


def test_identical_and_reversed():
    same = rank_consistency(REF, REF)
    assert same.spearman == pytest.approx(1.0) and same.macro_spearman == pytest.approx(1.0)
    assert same.spearman_top25 == pytest.approx(1.0) and same.maintain == pytest.approx(1.0)
    assert same.lower_is_better and same.objective_metrics == ("bpb/code", "bpb/general")
    rev = table(
        {"bpb/general": [1.7, 1.6, 1.5, 1.4, 1.3, 1.2, 1.1, 1.0], "bpb/code": [1.2, 1.1, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5]}
    )
    out = rank_consistency(REF, rev)
    assert out.spearman == pytest.approx(-1.0) and out.per_metric["bpb/code"] == pytest.approx(-1.0)
    assert out.spearman_top25 == pytest.approx(-1.0)


def test_metric_direction_is_explicit_per_family():
    from proxy.validate import metric_direction

    assert metric_direction("acc/supplementary_math") == "higher"  # not "ppl" by substring
    assert metric_direction("bpb_candidate/code_high") == "lower" and metric_direction("loss/x") == "lower"
    assert metric_direction("exact_match/gsm8k") == "higher" and metric_direction("humaneval_bpb") is None
    ref = table({"acc/supplementary_math": [0.1, 0.2, 0.3, 0.4], "acc/x": [0.4, 0.3, 0.2, 0.1]})
    assert not rank_consistency(ref, ref).lower_is_better
    with pytest.raises(ValueError, match="mix directions"):
        rank_consistency(
            table({"acc/x": [1, 2, 3], "bpb/x": [1, 2, 3]}),
            table({"acc/x": [1, 2, 3], "bpb/x": [1, 2, 3]}),
            metrics=["acc/x", "bpb/x"],
        )
    odd = table({"mystery/x": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="'mystery/x': direction unknown"):
        rank_consistency(odd, odd)
    assert rank_consistency(odd, odd, lower_is_better=True).lower_is_better


def test_hand_computed_case():
    ref = table({"acc/x": [0.1, 0.2, 0.3, 0.4, 0.5]})
    prx = table({"acc/x": [0.2, 0.1, 0.3, 0.5, 0.4]})
    out = rank_consistency(ref, prx)
    # rank differences d = (1, -1, 0, 1, -1): rho = 1 - 6 * 4 / (5 * 24) = 0.8
    assert out.spearman == pytest.approx(0.8)
    assert out.maintain == pytest.approx(1.5 / 1.5)
    assert not out.lower_is_better
    # Top 25% (at least 3) by reference, higher is better: mix4, mix3, mix2 -> proxy 0.4, 0.5, 0.3 -> rho 0.5
    assert out.n_top25 == 3 and out.spearman_top25 == pytest.approx(0.5)
    half = rank_consistency(ref, {k: {"acc/x": v["acc/x"] / 2} for k, v in prx.items()})
    assert half.maintain == pytest.approx(0.5)


def test_formats_and_cli(tmp_path, capsys):
    rows = [{"name": n, **v} for n, v in REF.items()]
    pl.DataFrame(rows).write_parquet(tmp_path / "ref.parquet")
    pl.DataFrame(rows).write_csv(tmp_path / "ref.csv")
    (tmp_path / "proxy.json").write_text(json.dumps({n: v for n, v in REF.items()}))
    assert (
        read_scores(tmp_path / "ref.parquet")
        == read_scores(tmp_path / "ref.csv")
        == read_scores(tmp_path / "proxy.json")
    )
    out = tmp_path / "val"
    assert (
        main(
            [
                "validate",
                "--references",
                str(tmp_path / "ref.parquet"),
                "--proxies",
                str(tmp_path / "proxy.json"),
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["spearman"] == pytest.approx(1.0) and report["n_mixtures"] == 8
    assert (out / "rank_scatter.png").stat().st_size > 1000 and (out / "rank_consistency.json").exists()
    assert (
        main(
            [
                "validate",
                "--references",
                str(tmp_path / "ref.csv"),
                "--proxies",
                str(tmp_path / "ref.csv"),
                "--metrics",
                "bpb/nope",
            ]
        )
        == 1
    )
    assert "bpb/nope" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["merge", "evaluate", "search", "validate"])
def test_help_renders(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0 and "examples:" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--no-such-flag"])
    assert exit_info.value.code == 2
