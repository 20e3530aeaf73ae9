"""Mixture and plan files: round trips, and errors that name the file and the field."""

from __future__ import annotations

import json

import pytest

from mixer import Mixture, MixtureError, Plan, PlanError


def test_mixture_round_trip(tmp_path):
    m = Mixture("best", "candidate", {"general": 0.25, "code_high": 0.75}, {"method": "search"})
    m.save(tmp_path / "m.json")
    assert Mixture.load(tmp_path / "m.json") == m
    assert Mixture.from_dict(m.to_dict()) == m


@pytest.mark.parametrize(
    "data, field",
    [
        ({"name": "x", "level": "candidate", "ratios": {"a": 0.5, "b": 0.4}}, "ratios: must sum to 1"),
        ({"name": "x", "level": "candidate", "ratios": {"a": 1.5, "b": -0.5}}, "ratios.b"),
        ({"name": "x", "level": "tier", "ratios": {"a": 1.0}}, "level: 'tier'"),
        ({"name": "x", "level": "domain"}, "ratios: is required"),
        ({"name": "", "level": "domain", "ratios": {"a": 1.0}}, "name:"),
        ({"name": "x", "level": "domain", "ratios": {"a": "1"}}, "ratios.a"),
        ({"name": "x", "level": "domain", "ratios": {"a": 1.0}, "extra": 1}, "extra: unknown field"),
    ],
)
def test_bad_mixture_names_file_and_field(tmp_path, data, field):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(MixtureError) as e:
        Mixture.load(path)
    assert str(path) in str(e.value) and field in str(e.value)


def test_mixture_invalid_json_names_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(MixtureError, match="broken.json: invalid JSON"):
        Mixture.load(path)


def test_plan_round_trip_keeps_id(tiny_plan, tmp_path):
    tiny_plan.save(tmp_path / "plan.json")
    again = Plan.load(tmp_path / "plan.json")
    assert again == tiny_plan and again.plan_id == tiny_plan.plan_id


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda d: d.pop("target_tokens"), "target_tokens: is required"),
        (lambda d: d["sources"][0].update(epochs=9.0), "plan_id: "),
        (lambda d: (d.pop("plan_id"), d["sources"][0].update(allotted_tokens=1)), "sources: allotted_tokens sum to"),
        (lambda d: d["sources"][1]["shards"][0].pop("n_docs"), "sources[1].shards[0].n_docs: is required"),
        (lambda d: d["sources"][0].update(available_tokens=-3), "sources[0].available_tokens"),
        (lambda d: d.update(seq_len="long"), "seq_len"),
    ],
)
def test_bad_plan_names_field(tiny_plan, tmp_path, edit, field):
    data = tiny_plan.to_dict()
    edit(data)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PlanError) as e:
        Plan.load(path)
    assert str(path) in str(e.value) and field in str(e.value)


def test_mixture_and_plan_save_to_fsspec_urls(tiny_plan):
    m = Mixture("best", "domain", {"general": 1.0})
    m.save("memory://mixer-test/m.json")
    tiny_plan.save("memory://mixer-test/plan.json")
    try:
        assert Mixture.load("memory://mixer-test/m.json") == m
        assert Plan.load("memory://mixer-test/plan.json").plan_id == tiny_plan.plan_id
    finally:
        import fsspec

        fsspec.filesystem("memory").rm("/mixer-test", recursive=True)


def test_unreadable_mixture_files_are_one_error(tmp_path):
    binary = tmp_path / "binary.bin"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(MixtureError, match="binary.bin: cannot read the mixture file"):
        Mixture.load(binary)
    with pytest.raises(MixtureError, match="cannot read the mixture file"):
        Mixture.load(tmp_path)
