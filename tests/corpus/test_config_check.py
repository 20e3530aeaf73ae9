"""The one config validator: every annotation kind, rules from field metadata, and the message shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from corpus import DemixError
from corpus.config_check import ConfigChecker, ConfigError, check_config, config_keys, rules


@dataclass(frozen=True)
class Optim:
    lr: float = field(default=3e-4, metadata=rules(gt=0))
    """Peak learning rate."""
    schedule: Literal["cosine", "wsd"] = "cosine"
    """Schedule after warmup."""
    warmup: float = field(default=0.05, metadata=rules(ge=0, lt=1))
    """Warmup share of steps."""


@dataclass(frozen=True)
class Budget:
    name: str
    tokens: int = field(metadata=rules(tokens=True, ge=1))


@dataclass(frozen=True)
class Settings:
    tokens: int = field(metadata=rules(tokens=True))
    """Training tokens (an integer; 20M in YAML)."""
    seed: int = field(default=0, metadata=rules(ge=0))
    fsdp: bool = False
    out: Path | None = None
    tags: tuple[str, ...] = ()
    optim: Optim = Optim()
    budgets: tuple[Budget, ...] = ()
    shares: dict[str, float] = field(default_factory=dict, metadata=rules(ge=0, le=1))
    extra: dict[str, Any] = field(default_factory=dict)
    run_id: str = field(default="", metadata=rules(internal=True))
    batch: int = field(default=16, metadata=rules(key="batch-size", ge=1))


def _check(raw: Any) -> Settings:
    return check_config(Settings, raw, "runs/train.yaml", key="train")


def test_valid_config_is_the_dataclass_with_clean_values():
    s = _check(
        yaml.safe_load("""
        tokens: 1,500M
        seed: 3
        fsdp: true
        out: runs/x
        tags: smoke
        optim: {lr: 6e-4, schedule: wsd}
        budgets: [{name: a, tokens: 2M}, {name: b, tokens: 5}]
        shares: {1: 0.5, code: 1}
        extra: {anything: [1, 2]}
        batch-size: 32
    """)
    )
    assert s == Settings(
        tokens=1_500_000_000,
        seed=3,
        fsdp=True,
        out=Path("runs/x"),
        tags=("smoke",),
        optim=Optim(lr=6e-4, schedule="wsd"),
        budgets=(Budget("a", 2_000_000), Budget("b", 5)),
        shares={"1": 0.5, "code": 1.0},
        extra={"anything": [1, 2]},
        batch=32,
    )
    assert isinstance(s.optim.lr, float) and isinstance(s.shares["code"], float)  # 6e-4 came as a string from YAML


def test_defaults_and_null_sections():
    s = _check({"tokens": 7, "optim": None, "budgets": None, "out": None})
    assert s == Settings(tokens=7)


@pytest.mark.parametrize(
    "raw,expected",
    [
        ({}, "train.tokens: is required"),
        ({"tokens": None}, "train.tokens: is required"),
        ({"tokens": "1,5T"}, "train.tokens: '1,5T': a comma may only separate thousands"),
        ({"tokens": 1, "seed": -1}, "train.seed: -1: expected an integer >= 0"),
        ({"tokens": 1, "seed": True}, "train.seed: True: expected an integer >= 0"),
        ({"tokens": 1, "seed": 1.0}, "train.seed: 1.0: expected an integer >= 0"),
        ({"tokens": 1, "fsdp": "yes"}, "train.fsdp: 'yes': expected true or false"),
        ({"tokens": 1, "fsdp": 0}, "train.fsdp: 0: expected true or false"),
        ({"tokens": 1, "out": 3}, "train.out: 3: expected a string"),
        ({"tokens": 1, "tags": [1]}, "train.tags[0]: 1: expected a string"),
        ({"tokens": 1, "tags": {"a": 1}}, "train.tags: {'a': 1}: expected a list of strings"),
        ({"tokens": 1, "optim": {"lr": 0}}, "train.optim.lr: 0: expected a number > 0"),
        ({"tokens": 1, "optim": {"lr": float("inf")}}, "train.optim.lr: inf: expected a number > 0 (finite)"),
        ({"tokens": 1, "optim": {"lr": "fast"}}, "train.optim.lr: 'fast': expected a number > 0"),
        ({"tokens": 1, "optim": {"lr": True}}, "train.optim.lr: True: expected a number > 0"),
        ({"tokens": 1, "optim": {"warmup": 1}}, "train.optim.warmup: 1: expected a number in [0, 1)"),
        ({"tokens": 1, "optim": {"schedule": "linear"}}, "train.optim.schedule: 'linear': expected one of cosine, wsd"),
        (
            {"tokens": 1, "optim": {"momentum": 0.9}},
            "train.optim.momentum: unknown key; allowed keys are lr, schedule, warmup",
        ),
        ({"tokens": 1, "optim": "adam"}, "train.optim: 'adam': expected a mapping with keys lr, schedule, warmup"),
        (
            {"tokens": 1, "budgets": [{"name": "a", "tokens": "1M"}, {"name": "b", "tokens": 0}]},
            "train.budgets[1].tokens: 0: expected an integer >= 1",
        ),
        ({"tokens": 1, "budgets": [{"tokens": 5}]}, "train.budgets[0].name: is required"),
        ({"tokens": 1, "shares": {"code": 2}}, "train.shares.code: 2: expected a number in [0, 1]"),
        ({"tokens": 1, "shares": [0.5]}, "train.shares: [0.5]: expected a mapping"),
        ({"tokens": 1, "run_id": "x"}, "train.run_id: unknown key"),  # internal fields are not config keys
        (
            {"tokens": 1, "batch": 4},
            "train.batch: unknown key; allowed keys are tokens, seed, fsdp, out, tags, optim, "
            "budgets, shares, extra, batch-size",
        ),
        ({"tokens": 1, "batch-size": 0}, "train.batch-size: 0: expected an integer >= 1"),
        ([1, 2], "train: [1, 2]: expected a mapping with keys tokens,"),
    ],
)
def test_bad_values_name_where_key_path_and_value(raw, expected):
    with pytest.raises(ConfigError) as err:
        _check(raw)
    assert str(err.value).startswith("runs/train.yaml: "), err.value
    assert expected in str(err.value), err.value
    assert "\n" not in str(err.value)


def test_error_class_is_ours_and_can_be_a_subclass():
    class TrainError(ConfigError):
        pass

    with pytest.raises(TrainError) as err:
        check_config(Optim, {"lr": -1}, "--config", error=TrainError)
    assert isinstance(err.value, DemixError) and isinstance(err.value, ValueError)
    assert str(err.value) == "--config: lr: -1: expected a number > 0"


def test_supplied_values_and_keys():
    s = ConfigChecker("x.yaml").config(Settings, {"tokens": "ignored"}, supplied={"tokens": 5, "run_id": "r1"})
    assert s.tokens == 5 and s.run_id == "r1"
    assert config_keys(Optim) == ("lr", "schedule", "warmup")


def test_a_long_value_is_cut_in_the_message():
    with pytest.raises(ConfigError) as err:
        check_config(Optim, {"schedule": "x" * 500}, "f.yaml")
    assert len(str(err.value)) < 200


def test_unsupported_annotation_is_a_bug_not_a_config_error():
    @dataclass
    class Odd:
        pair: tuple[int, int] = (1, 2)

    with pytest.raises(TypeError, match="fixed-length tuples"):
        check_config(Odd, {"pair": [1, 2]}, "f.yaml")
