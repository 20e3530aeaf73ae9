"""The release layout planner against the Hub's limits: synthetic plans with many sources and huge counts, nothing written."""

from __future__ import annotations

import collections
import os

import pytest

from mixer import Plan, PlanSource
from mixer.release import write_release
from mixer.release_layout import (
    HUB_MAX_FILE_BYTES,
    HUB_MAX_FILES,
    HUB_MAX_FILES_PER_FOLDER,
    LayoutError,
    plan_layout,
    sample_name,
)


def synthetic_plan(n_sources: int, target: int, available: int, seq_len: int = 2048) -> Plan:
    """A plan of ``n_sources`` equal sources over shards that need not exist (the planner reads numbers only)."""
    base, extra = divmod(target, n_sources)
    sources = tuple(
        PlanSource(
            source=f"src-{i:03d}",
            domain="web",
            tier="high",
            candidate=None,
            share=1 / n_sources,
            available_tokens=available,
            allotted_tokens=base + (i < extra),
            epochs=(base + (i < extra)) / available,
            shards=(
                {
                    "path": f"shards/src-{i:03d}/00000_00000.parquet",
                    "sha256": "0" * 64,
                    "n_tokens": available,
                    "n_docs": available // 1000,
                },
            ),
        )
        for i in range(n_sources)
    )
    return Plan(
        target_tokens=target, seed=0, seq_len=seq_len, corpus_root="/nonexistent", eos_id=0, mixture={}, sources=sources
    )


def folders(files):
    return collections.Counter(os.path.dirname(f.path) for f in files)


def test_a_22T_release_of_300_sources_fits_every_limit(tmp_path):
    plan = synthetic_plan(300, 22 * 10**12, 200 * 10**9)  # ~73B allotted each, 200B available: released once
    out = tmp_path / "never"
    with pytest.raises(LayoutError, match="fewer than 100,000 files"):  # 22T released once in 0.5 GB files: 344K
        write_release(plan, str(out), samples=[10 * 10**9, 100 * 10**9], dry_run=True)
    planned = write_release(plan, str(out), samples=[10 * 10**9, 100 * 10**9], file_tokens=512 * 10**6, dry_run=True)
    files = [f for f in planned if f.path.startswith("data/")]
    assert {f.path for f in planned} - {f.path for f in files} == {"README.md", ".demix-release.json"}
    assert not out.exists()  # planning writes nothing
    assert HUB_MAX_FILES * 0.4 < len(files) < HUB_MAX_FILES
    per_folder = folders(files)
    assert max(per_folder.values()) < HUB_MAX_FILES_PER_FOLDER
    assert {"data/mixture", "data/sample-10B", "data/sample-100B"} <= set(per_folder)
    assert len(per_folder) == 300 + 3  # one folder per config: data/ itself holds 303 entries


def test_a_config_past_one_folder_spreads_over_subfolders():
    big = plan_layout(["web"], [10**12], 10**12 // 2048, 2048, mixture_slots=1)  # 15,625 files of 64M tokens
    web = big.configs[0]
    assert web.n_files == 15_625 and web.nested and web.glob == "data/web/*/train-*.parquet"
    counts = collections.Counter(os.path.dirname(web.path(i)) for i in range(web.n_files))
    assert len(counts) == 4 and max(counts.values()) < HUB_MAX_FILES_PER_FOLDER
    assert len({web.path(i) for i in range(web.n_files)}) == web.n_files
    spans = [web.span_of(i) for i in range(web.n_files)]  # the files tile the stream exactly
    assert spans[0][0] == 0 and spans[-1][1] == 10**12 and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


def test_the_whole_22T_stream_is_refused_for_the_file_limit(tmp_path):
    plan = synthetic_plan(30, 22 * 10**12, 10**12)
    with pytest.raises(LayoutError, match=r"fewer than 100,000 files per repository \(largest config 'mixture'"):
        write_release(plan, str(tmp_path / "rel"), mixture_max_tokens=None)
    assert not (tmp_path / "rel").exists()  # refused before the first byte


def test_files_over_20GB_are_refused(tmp_path):
    plan = synthetic_plan(2, 10**12, 10**12)
    with pytest.raises(LayoutError, match="under 20 GB"):
        write_release(plan, str(tmp_path / "rel"), file_tokens=HUB_MAX_FILE_BYTES // 8)
    assert not (tmp_path / "rel").exists()
    plan_layout(["a"], [10**9], 10**6, 1000, mixture_slots=1, file_tokens=HUB_MAX_FILE_BYTES // 8 - 1)


def test_too_many_configs_for_one_folder_and_bad_samples_are_refused():
    with pytest.raises(LayoutError, match="entries per folder"):
        plan_layout([f"s{i}" for i in range(10_000)], [1] * 10_000, 10**6, 1, mixture_slots=1, file_tokens=10**7)
    with pytest.raises(LayoutError, match="at least one sequence"):
        plan_layout(["a"], [100], 10, 64, mixture_slots=1, samples=[10])
    with pytest.raises(LayoutError, match="at most the stream"):
        plan_layout(["a"], [100], 10, 64, mixture_slots=1, samples=[641])


def test_sample_names():
    assert [sample_name(n) for n in (10**10, 10**11, 1_500_000_000, 2_000, 12_345)] == [
        "sample-10B",
        "sample-100B",
        "sample-1500M",
        "sample-2K",
        "sample-12345",
    ]
