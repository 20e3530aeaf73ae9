"""Release a plan as a Hugging Face dataset folder (any fsspec URL) and optionally push it to the Hub.

Layout: ``data/<source>/train-*.parquet`` holds the documents the plan takes from each source
(every document once, however many epochs; a fractional single epoch releases its seeded prefix),
``data/mixture/train-*.parquet`` holds the mixture stream's documents in sampler order (repeats
included, capped at ``mixture_max_tokens``), ``tokenizer/`` the corpus tokenizer, and README.md the
dataset card whose YAML ``configs:`` block names one config per source plus ``mixture``.

Every release folder holds a marker, ``.demix-release.json``, written before anything else:

    {"tool": "mixer release", "version": 1, "plan_id": "9f2c61d0a4b7e815"}

It is what makes ``overwrite`` safe: only a folder with the marker is ever replaced, and then only
the entries a release writes (``data/``, ``tokenizer/``, README.md, the marker) are deleted, so a
mistyped ``--out .`` or a Hub clone's ``.git`` is never touched.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Iterator

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from corpus import format_tokens
from mixer.plan import Plan
from mixer.sampler import Sampler
from mixer.stream import SourceStream, join_url
from corpus.errors import DemixError

ROWS_PER_FILE = 50_000
MARKER = ".demix-release.json"
MARKER_VERSION = 1
RELEASE_ENTRIES = ("data", "tokenizer", "README.md", MARKER)  # all that a release writes at its top level
DEFAULT_MIXTURE_MAX_TOKENS = 100_000_000
SOURCE_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("tokens", pa.list_(pa.uint32())),
                           ("n_tokens", pa.int32())])
MIXTURE_SCHEMA = pa.schema([("id", pa.string()), ("source", pa.string()), ("epoch", pa.int32()),
                            ("text", pa.string()), ("tokens", pa.list_(pa.uint32())), ("n_tokens", pa.int32())])


class ReleaseError(DemixError, RuntimeError):
    """A release that cannot be written or pushed; the message names the path or repo."""


@dataclass(frozen=True)
class ReleaseFile:
    """One file of a release folder: path relative to the folder, size in bytes."""

    path: str
    n_bytes: int


def iter_documents(stream: SourceStream, stop: int) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """Yield ``(stream offset, epoch, row)`` for each document starting before stream offset ``stop`` (int)."""
    pos = 0
    while pos < stop:
        key, bstart, blen = stream.locate(pos)
        epoch, i, g = key
        table = stream.open_shard(i).read_row_group(g, columns=["id", "text", "tokens", "n_tokens"])
        perm = stream.doc_permutation(key, table.num_rows)
        table = table.take(pa.array(perm))
        starts = bstart + np.concatenate([[0], np.cumsum(np.asarray(table.column("n_tokens"), dtype=np.int64) + 1)])
        n = int(np.searchsorted(starts[:-1], stop, side="left"))
        for j, row in enumerate(table.slice(0, n).to_pylist()):
            yield int(starts[j]), epoch, row
        pos = bstart + blen


def _size_category(n: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")):
        if n < bound:
            return name
    return "1B<n<10B"


class _Writer:
    """Buffers rows and writes ``<folder>/train-NNNNN.parquet`` files atomically."""

    def __init__(self, fs: fsspec.AbstractFileSystem, folder: str, schema: pa.Schema):
        self.fs, self.folder, self.schema = fs, folder, schema
        self.rows: list[dict[str, Any]] = []
        self.n_files = self.n_rows = self.n_tokens = 0
        fs.makedirs(folder, exist_ok=True)

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.n_rows += 1
        self.n_tokens += int(row["n_tokens"])
        if len(self.rows) >= ROWS_PER_FILE:
            self.flush()

    def flush(self) -> None:
        if not self.rows and self.n_files:
            return
        table = pa.Table.from_pylist(self.rows, schema=self.schema)
        path = f"{self.folder}/train-{self.n_files:05d}.parquet"
        tmp = f"{self.folder}/.tmp-train-{self.n_files:05d}.parquet"
        with self.fs.open(tmp, "wb") as f:
            pq.write_table(table, f, compression="zstd")
        self.fs.mv(tmp, path)
        self.n_files += 1
        self.rows = []


def write_release(plan: Plan | str | os.PathLike, out: str, *, mixture_max_tokens: int | None = DEFAULT_MIXTURE_MAX_TOKENS,
                  overwrite: bool = False, progress: bool = False) -> list[ReleaseFile]:
    """Write the release folder for ``plan`` at ``out`` (path or fsspec URL); returns its files and sizes.

    ``mixture_max_tokens`` (int or None for all) caps the mixture config. Raises ReleaseError when
    ``out`` holds files and ``overwrite`` is False.
    """
    if isinstance(plan, Plan):  # names become paths: check a Plan built in code as a loaded one is checked
        plan = Plan.from_dict(plan.to_dict(), file="<plan>")
    sampler = Sampler(plan, prefetch=0)
    plan = sampler.plan
    clash = [s.source for s in plan.sources if s.source == "mixture" or s.source.startswith("sample-")]
    if clash:
        raise ReleaseError(f"plan {plan.plan_id}: source {clash[0]!r} would share data/{clash[0]}/ with the "
                           "release's own config of that name; rename the source")
    fs, root = fsspec.core.url_to_fs(out)
    root = root.rstrip("/")
    prepare_folder(fs, root, out, overwrite=overwrite)
    write_marker(fs, root, plan)
    streams = sampler.streams()
    L = sampler.seq_len
    stats: dict[str, dict[str, int]] = {}
    names = sampler.source_names
    for s, name in enumerate(names):
        stream = streams[s]
        if stream is None:
            continue
        writer = _Writer(fs, f"{root}/data/{name}", SOURCE_SCHEMA)
        for _, _, row in iter_documents(stream, min(sampler.sequence_counts[s] * L, stream.epoch_len)):
            writer.add(row)
        writer.flush()
        stats[name] = {"docs": writer.n_rows, "tokens": writer.n_tokens}
        if progress:
            print(f"  {name}: {writer.n_rows} documents, {format_tokens(writer.n_tokens)} tokens")
    mix = _Writer(fs, f"{root}/data/mixture", MIXTURE_SCHEMA)
    docs = [iter_documents(st, n * L) if st is not None else iter(()) for st, n in zip(streams, sampler.sequence_counts)]
    pending: list[tuple[int, int, dict[str, Any]] | None] = [next(d, None) for d in docs]
    budget = plan.target_tokens if mixture_max_tokens is None else min(mixture_max_tokens, plan.target_tokens)
    streamed = 0
    for s, k in sampler.schedule.iter_slots():
        if streamed >= budget:
            break
        streamed += L
        while pending[s] is not None and pending[s][0] < (k + 1) * L:
            _, epoch, row = pending[s]
            mix.add({"source": names[s], "epoch": epoch, **row})
            pending[s] = next(docs[s], None)
    mix.flush()
    _copy_tokenizer(plan, fs, root)
    card = render_card(plan, sampler, stats, {"docs": mix.n_rows, "tokens": mix.n_tokens, "streamed": streamed})
    with fs.open(f"{root}/README.md", "w") as f:
        f.write(card)
    return list_release(out)


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


def write_marker(fs: fsspec.AbstractFileSystem, root: str, plan: Plan) -> None:
    """Mark ``root`` as a folder this tool wrote (the first file of every release)."""
    fs.makedirs(root, exist_ok=True)
    with fs.open(f"{root}/{MARKER}", "w") as f:
        json.dump({"tool": "mixer release", "version": MARKER_VERSION, "plan_id": plan.plan_id}, f)


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
        raise ReleaseError(f"{out}: is not empty and holds no {MARKER}, so no release wrote it; refusing to write "
                           "there or delete anything (give --out a new or empty folder)")
    if not overwrite:
        raise ReleaseError(f"{out}: exists and is not empty (a release of plan {marker.get('plan_id')}); "
                           "pass --overwrite to replace it")
    for path in entries:
        if os.path.basename(path.rstrip("/")) in RELEASE_ENTRIES and os.path.basename(path.rstrip("/")) != MARKER:
            fs.rm(path, recursive=True)
    fs.rm(f"{root}/{MARKER}")  # last: a crash above leaves the folder still marked as ours


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
        rel = path[len(root):].lstrip("/") if path.startswith(root) else path.split(root.lstrip("/"), 1)[-1].lstrip("/")
        files.append(ReleaseFile(rel, int(info.get("size") or 0)))
    return files


def render_card(plan: Plan, sampler: Sampler, stats: dict[str, dict[str, int]], mixture: dict[str, int]) -> str:
    """The README.md dataset card: YAML header (configs, license, language, size) and the ratio table."""
    licenses = sorted({s.license or "unknown" for s in plan.sources if s.source in stats})
    total_docs = sum(v["docs"] for v in stats.values())
    configs = [{"config_name": "mixture", "default": True,
                "data_files": [{"split": "train", "path": "data/mixture/train-*.parquet"}]}]
    configs += [{"config_name": name, "data_files": [{"split": "train", "path": f"data/{name}/train-*.parquet"}]}
                for name in stats]
    header = {"license": licenses[0] if len(licenses) == 1 and licenses[0] != "unknown" else "other",
              "language": ["en"], "size_categories": [_size_category(total_docs)],
              "tags": ["demix", "pretraining", "data-mixture"], "configs": configs}
    # safe_dump quotes what YAML would misread (a source named `null`, `yes` or `1e3`), never an f-string
    lines = ["---", yaml.safe_dump(header, sort_keys=False, allow_unicode=True).rstrip("\n"), "---"]
    m = plan.mixture or {}
    capped = mixture["streamed"] < plan.target_tokens
    lines += [
        "", f"# {m.get('name', 'mixture')}: a DeMix data mixture", "",
        f"Plan `{plan.plan_id}`: {plan.target_tokens:,} tokens ({format_tokens(plan.target_tokens)}) in "
        f"{sampler.num_sequences:,} sequences of {sampler.seq_len}, seed {plan.seed}.", "",
        f"- recipe: `{plan.recipe}`; pipeline config hash: `{plan.config_hash}`",
        f"- tokenizer: `{plan.tokenizer_path}` (copied to `tokenizer/`), EOS id {plan.eos_id}",
        f"- mixture level: `{m.get('level')}`; licenses: {', '.join(licenses)}", "",
        "## Mixture", "", "| key | ratio |", "|---|---|",
        *[f"| {k} | {v:.6f} |" for k, v in sorted((m.get('ratios') or {}).items())], "",
        "## Sources", "",
        "Each `data/<source>` config holds the documents the plan takes from that source once; `epochs` says "
        "how many times training repeats them (allotted / available tokens).", "",
        "| source | domain | tier | candidate | share | available tokens | allotted tokens | epochs | documents released |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in plan.sources:
        st = stats.get(s.source, {"docs": 0})
        lines.append(f"| {s.source} | {s.domain} | {s.tier} | {s.candidate or ''} | {s.share:.6f} | "
                     f"{s.available_tokens:,} | {s.allotted_tokens:,} | {s.epochs:.3f} | {st['docs']:,} |")
    lines += ["", "## The `mixture` config", "",
              f"Documents in the order the `mixer` Sampler streams them (EOS-joined and packed into sequences of "
              f"{sampler.seq_len} at training time), repeats included, with their `source` and `epoch`: "
              f"{mixture['docs']:,} documents, {mixture['tokens']:,} tokens."]
    if capped:
        lines.append(f"This is the first {mixture['streamed']:,} stream tokens of {plan.target_tokens:,} "
                     "(a prefix; regenerate the whole stream with `mixer.Sampler` and the plan).")
    lines += ["", "Rebuild: `mixer resolve` writes the plan; `mixer release --plan plan.json --out DIR` writes this folder.", ""]
    return "\n".join(lines)


def push_release(folder: str, repo_id: str, *, private: bool = False, revision: str | None = None) -> str:
    """Create the dataset repo and upload ``folder`` resumably (``upload_large_folder``, or ``upload_folder`` on hub >= 2).

    The token comes from the usual Hugging Face login or HF_TOKEN and is never printed. Raises
    ReleaseError for a non-local folder.
    """
    fs, path = fsspec.core.url_to_fs(folder)
    if "file" not in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        raise ReleaseError(f"{folder}: --push needs a local folder (upload_large_folder reads from disk)")
    from huggingface_hub import HfApi

    api = HfApi()
    url = api.create_repo(repo_id=repo_id, repo_type="dataset", private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id=repo_id, repo_type="dataset", branch=revision, exist_ok=True)
    if hasattr(api, "upload_large_folder"):  # huggingface_hub < 2: the resumable multi-commit uploader
        api.upload_large_folder(repo_id=repo_id, folder_path=path, repo_type="dataset", revision=revision,
                                private=private)
    else:  # huggingface_hub >= 2: upload_folder itself batches large folders and resumes a rerun
        api.upload_folder(repo_id=repo_id, folder_path=path, repo_type="dataset", revision=revision,
                          commit_message="mixer release")
    return str(url)
