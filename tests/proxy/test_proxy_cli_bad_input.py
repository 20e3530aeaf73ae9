"""Bad input on every `proxy` command: one line on stderr naming the problem, exit 1 or 2, never a traceback."""

from __future__ import annotations

import shlex

import pytest

from manifests import open_manifest
from proxy.cli.main import main

CASES = [  # (id, argv with {placeholders}, exit code, what stderr must name)
    ("base-no-manifest", "base --db {missing} --config tiny --tokens 1M --out {tmp}/b", 1, "no manifest"),
    ("base-decimal-comma", "base --db {empty} --config tiny --tokens 1,5T --out {tmp}/b", 2, "1,5T"),
    ("base-negative", "base --db {empty} --config tiny --tokens -5 --out {tmp}/b", 2, "-5"),
    ("base-empty-corpus", "base --db {empty} --config tiny --tokens 1M --out {tmp}/b", 1, "meta.vocab_size is missing"),
    (
        "components-no-base",
        "components --base {missing} --db {empty} --tokens 1M --out {tmp}/c",
        1,
        "not a model folder",
    ),
    ("merge-no-components", "merge --components {missing} --mixture {mix} --out {tmp}/m", 1, "no such components"),
    ("evaluate-no-manifest", "evaluate --model {missing} --db {missing}", 1, "no manifest"),
    ("search-no-components", "search --components {missing} --out {tmp}/s", 1, "no such components"),
    ("search-bad-int", "search --components {missing} --out {tmp}/s --pool abc", 2, "abc"),
    ("validate-bad-json", "validate --references {bad} --proxies {bad}", 1, "bad.json"),
    ("validate-binary", "validate --references {binary} --proxies {binary}", 1, "binary.parquet"),
    ("validate-missing", "validate --references {missing} --proxies {missing}", 1, "no such score table"),
    ("train-bad-mixture", "train --mixture {bad} --tokens 1M --out {tmp}/t --db {empty}", 1, "bad.json"),
]


@pytest.fixture()
def paths(tmp_path):
    (tmp_path / "bad.json").write_text('{"name": "m"')
    (tmp_path / "binary.parquet").write_bytes(b"\xff\xfe\x00\x81 not parquet")
    (tmp_path / "mix.json").write_text('{"name": "m", "level": "candidate", "ratios": {"a": 1.0}}')
    empty = tmp_path / "empty"
    empty.mkdir()
    with open_manifest(empty):  # a manifest with no sources and no shards
        pass
    return {
        "tmp": tmp_path,
        "missing": tmp_path / "nope",
        "empty": empty,
        "bad": tmp_path / "bad.json",
        "binary": tmp_path / "binary.parquet",
        "mix": tmp_path / "mix.json",
    }


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own usage errors
        return int(e.code)


@pytest.mark.parametrize("argv, code, needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(paths, capsys, argv, code, needle):
    rc = _run(shlex.split(argv.format(**{k: str(v) for k, v in paths.items()})))
    err = capsys.readouterr().err
    assert rc == code, err
    assert needle in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(("proxy: error:", "proxy ")), err
