"""Release a plan as a Hugging Face dataset folder (any fsspec URL) and optionally push it to the Hub.

Layout (planned and checked against the Hub's limits before writing: ``mixer.release_layout``):
``data/<source>/train-*.parquet`` holds the documents the plan takes from each source (every
document once, however many epochs; a fractional single epoch releases its seeded prefix),
``data/mixture/train-*.parquet`` the mixture stream's documents in sampler order (repeats included,
capped at ``mixture_max_tokens``), ``data/sample-<N>/`` the sampler's first ``N // seq_len``
sequences as rows, ``tokenizer/`` the corpus tokenizer, and README.md the dataset card
(``mixer.release_card``). Files are written one at a time with bounded memory
(``mixer.release_write``) and renamed when whole, so a killed release resumes where it stopped.
A recipe-only release (``recipe_only``) holds the plan, the manifest's rows for it, the recipe and
the card instead of data (``mixer.release_recipe``). ``push_release`` uploads a folder in batched,
resumable commits (``mixer.release_push``).

Every release folder holds a marker, ``.demix-release.json``, written before anything else:

    {"tool": "mixer release", "version": 1, "plan_id": "9f2c61d0a4b7e815",
     "settings": {"seq_len": 2048, "file_tokens": 64000000, "mixture_slots": 48829, "samples": [10000000]}}

(a recipe-only release's settings are ``{"recipe_only": true}``)

``settings`` are what decides the files' contents besides the plan: a rerun with the same plan and
settings resumes (writes only missing files); anything else needs ``overwrite``.

It is what makes ``overwrite`` safe: only a folder with the marker is ever replaced, and then only
the entries a release writes (RELEASE_ENTRIES: ``data/``, ``tokenizer/``, ``manifest/``, plan.json,
recipe.yaml, README.md, the marker) are deleted, so a
mistyped ``--out .`` or a Hub clone's ``.git`` is never touched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from corpus.errors import DemixError
from corpus.urls import join_url
from mixer.plan import Plan
from mixer.release_card import render_card
from mixer.release_layout import BYTES_PER_TOKEN, FILE_TOKENS, ConfigLayout, ReleaseFile, plan_layout
from mixer.release_push import push_release  # noqa: F401  (the package face: mixer.push_release)
from mixer.release_recipe import PlanRecipe, find_recipe, write_recipe_release
from mixer.release_write import write_mixture_file, write_sample_file, write_source_file
from mixer.sampler import Sampler

MARKER = ".demix-release.json"
MARKER_VERSION = 1
# all that a release (data or recipe-only) writes at its top level: the only entries --overwrite deletes
RELEASE_ENTRIES = ("data", "tokenizer", "manifest", "plan.json", "recipe.yaml", "README.md", MARKER)
DEFAULT_MIXTURE_MAX_TOKENS = 100_000_000


class ReleaseError(DemixError, RuntimeError):
    """A release that cannot be written or pushed; the message names the path or repo."""


def write_release(
    plan: Plan | str | os.PathLike,
    out: str,
    *,
    mixture_max_tokens: int | None = DEFAULT_MIXTURE_MAX_TOKENS,
    samples: Sequence[int] = (),
    file_tokens: int = FILE_TOKENS,
    overwrite: bool = False,
    recipe: str | os.PathLike | None = None,
    recipe_only: bool = False,
    dry_run: bool = False,
    progress: bool = False,
) -> list[ReleaseFile]:
    """Write the release folder for ``plan`` at ``out`` (path or fsspec URL); returns its files and sizes.

    ``mixture_max_tokens`` (int, or None for the whole stream) caps the mixture config; ``samples``
    (token counts) adds one ``sample-<N>`` config per count, the first ``N // seq_len`` sequences of
    the stream. The layout is planned and checked against the Hub limits before anything is written
    (LayoutError). A rerun on a folder that holds the same plan and settings writes only the files
    that are missing (a killed release resumes); another folder with files is refused unless it holds
    a release and ``overwrite`` is set. ``dry_run`` plans and checks only, writes and reads nothing
    at ``out``, and returns the planned files with upper estimates of their sizes (BYTES_PER_TOKEN;
    README.md and the marker as 0).

    ``recipe`` names the recipe file the plan was built from (found from the plan when None;
    ``mixer.release_recipe.find_recipe``): the card states its sources' upstream URLs and its filter
    and dedup settings. ``recipe_only`` writes the plan, the manifest's rows for it, the recipe and the
    card, and no data (``mixer.release_recipe``).
    """
    # names become paths: check a Plan built in code as a loaded one is checked
    plan = Plan.from_dict(plan.to_dict(), file="<plan>") if isinstance(plan, Plan) else Plan.load(plan)
    found = find_recipe(plan, recipe)
    if recipe_only:
        return _write_recipe_only(plan, out, found, overwrite=overwrite, dry_run=dry_run)
    sampler = Sampler(plan, prefetch=0)
    plan = sampler.plan
    clash = [s.source for s in plan.sources if s.source == "mixture" or s.source.startswith("sample-")]
    if clash:
        raise ReleaseError(
            f"plan {plan.plan_id}: source {clash[0]!r} would share data/{clash[0]}/ with the "
            "release's own config of that name; rename the source"
        )
    L = sampler.seq_len
    epoch_lens = [sum(int(sh["n_tokens"]) + int(sh["n_docs"]) for sh in s.shards) for s in plan.sources]
    budget = (
        sampler.num_sequences * L if mixture_max_tokens is None else min(mixture_max_tokens, sampler.num_sequences * L)
    )
    layout = plan_layout(
        sampler.source_names,
        [min(n * L, e) for n, e in zip(sampler.sequence_counts, epoch_lens)],
        sampler.num_sequences,
        L,
        mixture_slots=-(-budget // L),
        samples=samples,
        file_tokens=file_tokens,
    )
    if dry_run:
        return [
            ReleaseFile(MARKER, 0),
            ReleaseFile("README.md", 0),
            *_tokenizer_files(plan),
            *(ReleaseFile(c.path(i), _estimate(c, i, L)) for c in layout.configs for i in range(c.n_files)),
        ]
    fs, root = fsspec.core.url_to_fs(out)
    root = root.rstrip("/")
    settings = {
        "seq_len": L,
        "file_tokens": file_tokens,
        "mixture_slots": -(-budget // L),
        "samples": sorted(set(int(n) for n in samples)),
    }
    marker = read_marker(fs, root) if fs.isdir(root) else None
    resume = (
        bool(marker) and not overwrite and marker.get("plan_id") == plan.plan_id and marker.get("settings") == settings
    )
    if not resume:
        prepare_folder(fs, root, out, overwrite=overwrite)
        write_marker(fs, root, plan, settings)
    streams = sampler.streams()
    for c in layout.configs:
        todo = [i for i in range(c.n_files) if not fs.exists(f"{root}/{c.path(i)}")]
        for i in todo:  # whole files only ever exist under final names, so a rerun skips them
            path = f"{root}/{c.path(i)}"
            if c.kind == "source":
                write_source_file(fs, path, c, i, streams[c.source])
            elif c.kind == "mixture":
                write_mixture_file(fs, path, c, i, sampler, streams)
            else:
                write_sample_file(fs, path, c, i, plan)
        if progress:
            print(f"  {c.name}: {c.n_files} file(s), {len(todo)} written, {c.n_files - len(todo)} already there")
    _copy_tokenizer(plan, fs, root)
    stats = {c.name: config_stats(fs, root, c) for c in layout.configs}
    with fs.open(f"{root}/README.md", "w") as f:
        f.write(render_card(plan, sampler, layout, stats, found.recipe if found else None))
    return list_release(out)


def _write_recipe_only(
    plan: Plan, out: str, found: PlanRecipe | None, *, overwrite: bool, dry_run: bool
) -> list[ReleaseFile]:
    if dry_run:
        return [ReleaseFile(MARKER, 0), *write_recipe_release(plan, None, "", found, dry_run=True)]
    fs, root = fsspec.core.url_to_fs(out)
    root = root.rstrip("/")
    settings = {"recipe_only": True}
    marker = read_marker(fs, root) if fs.isdir(root) else None
    if not (marker and not overwrite and marker.get("plan_id") == plan.plan_id and marker.get("settings") == settings):
        prepare_folder(fs, root, out, overwrite=overwrite)
        write_marker(fs, root, plan, settings)
    write_recipe_release(plan, fs, root, found)
    return list_release(out)


def config_stats(fs: fsspec.AbstractFileSystem, root: str, config: ConfigLayout) -> dict[str, int]:
    """Rows and document tokens of a written config, read from its files' footers and n_tokens columns."""
    rows = tokens = 0
    for i in range(config.n_files):
        with fs.open(f"{root}/{config.path(i)}", "rb") as f:
            pf = pq.ParquetFile(f)
            rows += pf.metadata.num_rows
            if config.kind != "sample":
                tokens += int(pa.compute.sum(pf.read(columns=["n_tokens"]).column("n_tokens")).as_py() or 0)
    return {"rows": rows, "tokens": tokens}


def read_marker(fs: fsspec.AbstractFileSystem, root: str) -> dict[str, Any] | None:
    """The marker of the release folder at ``root``, or None when there is none (not a release)."""
    try:
        with fs.open(f"{root}/{MARKER}", "r") as f:
            marker = json.load(f)
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return marker if isinstance(marker, dict) and marker.get("tool") == "mixer release" else None


def write_marker(fs: fsspec.AbstractFileSystem, root: str, plan: Plan, settings: dict[str, Any]) -> None:
    """Mark ``root`` as a folder this tool wrote (the first file of every release), with what it holds."""
    fs.makedirs(root, exist_ok=True)
    with fs.open(f"{root}/{MARKER}", "w") as f:
        json.dump(
            {"tool": "mixer release", "version": MARKER_VERSION, "plan_id": plan.plan_id, "settings": settings}, f
        )


def prepare_folder(fs: fsspec.AbstractFileSystem, root: str, out: str, *, overwrite: bool) -> None:
    """Make ``root`` ready for a release, deleting only what a previous release wrote there.

    An absent or empty folder is used as it is. A non-empty folder is replaced only with
    ``overwrite`` and only when it holds the marker; anything else is refused before any write.
    """
    if not fs.exists(root):
        return
    if not fs.isdir(root):
        raise ReleaseError(f"{out}: is a file, not a folder; give --out a new or empty folder")
    entries = fs.ls(root, detail=False)
    if not entries:
        return
    marker = read_marker(fs, root)
    if marker is None:
        raise ReleaseError(
            f"{out}: is not empty and holds no {MARKER}, so no release wrote it; refusing to write "
            "there or delete anything (give --out a new or empty folder)"
        )
    if not overwrite:
        raise ReleaseError(
            f"{out}: exists and is not empty (a release of plan {marker.get('plan_id')} with settings "
            f"{marker.get('settings')}); pass --overwrite to replace it"
        )
    for path in entries:
        if os.path.basename(path.rstrip("/")) in RELEASE_ENTRIES and os.path.basename(path.rstrip("/")) != MARKER:
            fs.rm(path, recursive=True)
    fs.rm(f"{root}/{MARKER}")  # last: a crash above leaves the folder still marked as ours


def _estimate(config: ConfigLayout, i: int, seq_len: int) -> int:
    a, b = config.span_of(i)
    return (b - a) * (1 if config.kind == "source" else seq_len) * BYTES_PER_TOKEN


def _tokenizer_files(plan: Plan) -> list[ReleaseFile]:
    """The tokenizer files a release copies, with their sizes (none when the plan names no tokenizer)."""
    if not plan.tokenizer_path:
        return []
    src_fs, src = fsspec.core.url_to_fs(join_url(plan.corpus_root, plan.tokenizer_path))
    if not src_fs.isdir(src):
        return []
    return [
        ReleaseFile(f"tokenizer/{os.path.basename(e['name'])}", int(e.get("size") or 0))
        for e in sorted(src_fs.ls(src, detail=True), key=lambda e: e["name"])
    ]


def _copy_tokenizer(plan: Plan, fs: fsspec.AbstractFileSystem, root: str) -> None:
    if not plan.tokenizer_path:
        return
    src_fs, src = fsspec.core.url_to_fs(join_url(plan.corpus_root, plan.tokenizer_path))
    if not src_fs.isdir(src):
        return
    fs.makedirs(f"{root}/tokenizer", exist_ok=True)
    for path in src_fs.ls(src, detail=False):
        with src_fs.open(path, "rb") as fi, fs.open(f"{root}/tokenizer/{os.path.basename(path)}", "wb") as fo:
            fo.write(fi.read())


def list_release(out: str) -> list[ReleaseFile]:
    """Every file under a release folder (relative path, bytes), sorted by path."""
    fs, root = fsspec.core.url_to_fs(out)
    root = root.rstrip("/")
    files = []
    for path, info in sorted(fs.find(root, detail=True).items()):
        rel = (
            path[len(root) :].lstrip("/") if path.startswith(root) else path.split(root.lstrip("/"), 1)[-1].lstrip("/")
        )
        files.append(ReleaseFile(rel, int(info.get("size") or 0)))
    return files
