"""Reading a recipe's sources: work units listed once in the driver, read by datatrove tasks.

A work unit is one input file (any fsspec URL) or one range of a built-in generator. Units are listed
in a fixed order and unit ``i`` goes to task ``i % world_size``, so every rerun assigns the same
documents to the same task. Bad input is counted per source with a reason and skipped, never fatal.

Sources laid out as on the Hub read the same way, local or remote: a location may be a glob
(``hf://datasets/<org>/<name>/data/**/*.parquet``) or a folder (every data file below it, hidden
folders skipped), and a source of a data format (jsonl, jsonl.gz, jsonl.zst, parquet) reads each file
by its own suffix (``.parquet``; ``.jsonl``/``.json`` plain, ``.gz`` or ``.zst``), so one Hub folder may
mix them. ``hf://`` URLs go to fsspec's HfFileSystem (huggingface_hub) unchanged.
"""

from __future__ import annotations

import email.parser
import fnmatch
import gzip
import json
import math
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import fsspec
from datatrove.data import Document, DocumentsPipeline

from corpus import Recipe, Source
from corpus.generators import math_problems
from pipelines.stats import CountingStep

BUILTIN_UNIT_DOCS = 1000
_GLOB_CHARS = re.compile(r"[*?\[]")
DATA_FORMATS = ("jsonl", "jsonl.gz", "jsonl.zst", "parquet")
JSONL_SUFFIXES = tuple(f"{stem}{c}" for stem in (".jsonl", ".json") for c in ("", ".gz", ".zst", ".zstd"))
DATA_SUFFIXES = (".parquet", *JSONL_SUFFIXES)


def file_format(url: str, source_format: str) -> str:
    """How to read one file of a source: a data source's file by its own suffix, anything else as the source says."""
    if source_format in DATA_FORMATS:
        name = url.lower()
        if name.endswith(".parquet"):
            return "parquet"
        if name.endswith(JSONL_SUFFIXES):
            return "jsonl"
    return source_format


def _folder_files(fs, folder: str) -> list[str]:
    """The data files below a folder (recursive, sorted), skipping hidden files and folders (.cache, .git...)."""
    root = folder.rstrip("/")
    return sorted(
        p
        for p in fs.find(root)
        if p.lower().endswith(DATA_SUFFIXES) and not any(part.startswith(".") for part in p[len(root) :].split("/"))
    )


@dataclass(frozen=True)
class WorkUnit:
    """One input of a source: a file (`url`, `rel` its path below the location's fixed prefix) or a builtin range."""

    source: str
    url: str
    rel: str
    start: int = 0
    stop: int = 0


@dataclass(frozen=True)
class SourceFormat:
    """What a reader needs to know about a source (picklable, small)."""

    name: str
    domain: str
    format: str
    text_field: str = "text"
    id_field: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, s: Source) -> SourceFormat:
        """The reading-relevant part of a recipe Source."""
        return cls(s.name, s.domain, s.format, s.text_field, s.id_field, dict(s.params))


def _fixed_prefix(pattern: str) -> str:
    m = _GLOB_CHARS.search(pattern)
    head = pattern if m is None else pattern[: m.start()]
    return head.rsplit("/", 1)[0] if m is not None or "/" in head else ""


def list_units(
    recipe: Recipe, sources: list[str] | None = None, limit: int | None = None
) -> tuple[list[WorkUnit], dict[str, int]]:
    """List every work unit of the selected sources and count locations that match nothing.

    Returns (units, {source: missing locations}). Builtin sources are cut into ranges of
    BUILTIN_UNIT_DOCS documents (params.n_docs, capped by `limit`).
    """
    units: list[WorkUnit] = []
    missing: dict[str, int] = {}
    for s in recipe.sources:
        if sources is not None and s.name not in sources:
            continue
        if s.format == "builtin":
            n = int(s.params.get("n_docs", 10_000))
            n = min(n, limit) if limit else n
            for loc in s.locations:
                units += [
                    WorkUnit(s.name, loc, loc, a, min(n, a + BUILTIN_UNIT_DOCS)) for a in range(0, n, BUILTIN_UNIT_DOCS)
                ]
            continue
        excludes = tuple(s.params.get("exclude", ()))
        seen: set[str] = set()
        for loc in s.locations:
            try:
                fs, path = fsspec.core.url_to_fs(loc)
                prefix = _fixed_prefix(path)
                if _GLOB_CHARS.search(path):
                    found = sorted(p for p, info in fs.glob(path, detail=True).items() if info.get("type") == "file")
                elif s.format in DATA_FORMATS and fs.isdir(path):  # a dataset folder as on the Hub
                    found, prefix = _folder_files(fs, path), path.rstrip("/")
                else:
                    found = [path] if fs.isfile(path) else []
            except (OSError, ValueError, ImportError):
                found = []
            found = [p for p in found if not any(fnmatch.fnmatch(p, ex) for ex in excludes)]
            if not found:
                missing[s.name] = missing.get(s.name, 0) + 1
                continue
            for p in found:
                if p in seen:
                    continue
                seen.add(p)
                rel = p[len(prefix) :].lstrip("/") if prefix and p.startswith(prefix) else p.rsplit("/", 1)[-1]
                units.append(WorkUnit(s.name, fs.unstrip_protocol(p), rel))
    return units, missing


class SourceReader(CountingStep):
    """Read the work units of this task and yield Documents with a stable id and source metadata.

    An id may repeat (an id field re-used across re-crawled files); the dedup stage makes ids unique.
    """

    name = "read"
    type = "📖 - READER"

    def __init__(self, units: list[WorkUnit], formats: dict[str, SourceFormat], limit: int | None = None):
        super().__init__()
        self.units = list(units)
        self.formats = dict(formats)
        self.limit = limit

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        cap = math.ceil(self.limit / world_size) if self.limit else None
        emitted: dict[str, int] = {}
        for i, unit in enumerate(self.units):
            if i % world_size != rank:
                continue
            fmt = self.formats[unit.source]
            capped = cap is not None and fmt.format != "builtin"
            if capped and emitted.get(unit.source, 0) >= cap:
                continue
            for row, doc in enumerate(self._read_unit(unit, fmt)):
                if capped and emitted.get(unit.source, 0) >= cap:
                    self.count_drop(unit.source, "limit")
                    break
                emitted[unit.source] = emitted.get(unit.source, 0) + 1
                # unit, row: where the record comes from, which orders repeated ids (pipelines.dedup.unique_ids)
                doc.metadata.update(source=unit.source, domain=fmt.domain, unit=i, row=row)
                self.count_out(unit.source)
                yield doc

    # each reader yields Documents and counts records in and bad records per reason
    def _read_unit(self, unit: WorkUnit, fmt: SourceFormat) -> Iterator[Document]:
        kind = file_format(unit.url, fmt.format)
        if kind == "builtin":
            yield from self._read_builtin(unit, fmt)
        elif kind in ("jsonl", "jsonl.gz", "jsonl.zst"):
            yield from self._read_jsonl(unit, fmt)
        elif kind == "parquet":
            yield from self._read_parquet(unit, fmt)
        else:
            yield from self._read_file(unit, fmt)

    def _bad(self, source: str, reason: str, n: int = 1) -> None:
        self.count_in(source, n)
        self.count_drop(source, reason, n)

    def _read_builtin(self, unit: WorkUnit, fmt: SourceFormat) -> Iterator[Document]:
        seed = int(fmt.params.get("seed", 0))
        kinds = tuple(fmt.params.get("kinds", math_problems.KINDS))
        for i, p in math_problems.generate(seed, unit.start, unit.stop, kinds):
            self.count_in(unit.source)
            yield Document(
                text=p.text,
                id=f"{unit.source}/math-{seed}-{i:08d}",
                metadata={"kind": p.kind, "template": p.template, "answer": p.answer},
            )

    def _read_jsonl(self, unit: WorkUnit, fmt: SourceFormat) -> Iterator[Document]:
        zstd = unit.url.endswith((".zst", ".zstd"))
        gz = unit.url.endswith(".gz")
        truncated = "truncated_zstd" if zstd else "truncated_gzip"
        n_lines = 0
        try:
            # .gz and .zst are decompressed here, chunk by chunk, so that the complete lines before a cut
            # are read (a GzipFile.read raises at the cut and loses everything it had decoded)
            with fsspec.open(unit.url, "rb", compression=None if zstd or gz else "infer") as f:
                chunks = _zstd_chunks(f) if zstd else _gzip_chunks(f) if gz else iter(lambda: f.read(1 << 20), b"")
                for lineno, raw in enumerate(_lines(chunks), 1):
                    if not raw.strip():
                        continue
                    n_lines += 1
                    try:
                        line = raw.decode("utf-8")
                    except UnicodeDecodeError:
                        self._bad(unit.source, "invalid_utf8")
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError:
                        self._bad(unit.source, "malformed_json")
                        continue
                    if not isinstance(obj, dict):
                        self._bad(unit.source, "malformed_json")
                        continue
                    text = obj.get(fmt.text_field)
                    if not isinstance(text, str):
                        self._bad(unit.source, "missing_text")
                        continue
                    self.count_in(unit.source)
                    yield Document(text=text, id=self._doc_id(unit, fmt, obj, f":{lineno}"))
        except (EOFError, gzip.BadGzipFile, zlib.error):  # truncated or corrupt: the lines before the cut are kept
            self._bad(unit.source, truncated)
            return
        except Exception as e:  # noqa: BLE001 - zstandard raises its own ZstdError on corrupt frames
            if type(e).__name__ == "ZstdError":
                self._bad(unit.source, "truncated_zstd")
                return
            raise
        if n_lines == 0:
            self._bad(unit.source, "empty_file")

    def _read_parquet(self, unit: WorkUnit, fmt: SourceFormat) -> Iterator[Document]:
        import pyarrow.parquet as pq

        try:
            with fsspec.open(unit.url, "rb") as f:
                pf = pq.ParquetFile(f)
                names = pf.schema_arrow.names
                if fmt.text_field not in names:
                    self._bad(unit.source, "missing_text", max(1, pf.metadata.num_rows))
                    return
                if pf.metadata.num_rows == 0:
                    self._bad(unit.source, "empty_file")
                    return
                cols = [fmt.text_field] + ([fmt.id_field] if fmt.id_field and fmt.id_field in names else [])
                row = 0
                for batch in pf.iter_batches(columns=cols, batch_size=4096):
                    texts = batch.column(fmt.text_field).to_pylist()
                    ids = batch.column(fmt.id_field).to_pylist() if len(cols) > 1 else [None] * len(texts)
                    for text, did in zip(texts, ids):
                        if not isinstance(text, str):
                            self._bad(unit.source, "missing_text")
                        else:
                            self.count_in(unit.source)
                            yield Document(
                                text=text,
                                id=f"{unit.source}/{did}" if did is not None else f"{unit.source}/{unit.rel}:{row}",
                            )
                        row += 1
        except (OSError, ValueError):  # pyarrow: ArrowInvalid (ValueError) / OSError on a cut file
            self._bad(unit.source, "truncated_parquet")

    def _read_file(self, unit: WorkUnit, fmt: SourceFormat) -> Iterator[Document]:
        try:
            with fsspec.open(unit.url, "rb", compression="infer") as f:
                data = f.read()
        except (EOFError, gzip.BadGzipFile, zlib.error):
            self._bad(unit.source, "truncated_gzip")
            return
        if not data.strip():
            self._bad(unit.source, "empty_file")
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self._bad(unit.source, "invalid_utf8")
            return
        if fmt.format == "dist-metadata":
            text = metadata_description(text)
            if not text.strip():
                self._bad(unit.source, "missing_text")
                return
        self.count_in(unit.source)
        yield Document(text=text, id=f"{unit.source}/{unit.rel}")

    @staticmethod
    def _doc_id(unit: WorkUnit, fmt: SourceFormat, obj: dict, fallback: str) -> str:
        if fmt.id_field and obj.get(fmt.id_field) is not None:
            return f"{unit.source}/{obj[fmt.id_field]}"
        return f"{unit.source}/{unit.rel}{fallback}"


class TruncatedStream(EOFError):
    """A compressed stream that ends inside a frame."""


def _frame_chunks(raw, new_decoder: Callable[[], Any], what: str, block: int = 1 << 20) -> Iterator[bytes]:
    """Decompressed chunks of a stream of concatenated frames (zstd frames, gzip members).

    Everything decodable before a cut is yielded first, so a reader keeps the complete lines before it;
    then TruncatedStream says the stream ended inside a frame.
    """
    d, pending = new_decoder(), False
    for chunk in iter(lambda: raw.read(block), b""):
        while chunk:
            pending = True
            out = d.decompress(chunk)
            if out:
                yield out
            if d.eof:  # a frame ends; the next one (gzip -c a b, multi-frame zstd) continues in unused_data
                chunk, d, pending = d.unused_data, new_decoder(), False
            else:
                chunk = b""
    if pending:
        tail = d.flush() if hasattr(d, "flush") else b""
        if tail:
            yield tail
        raise TruncatedStream(f"{what} stream ends inside a frame")


def _zstd_chunks(raw, block: int = 1 << 20) -> Iterator[bytes]:
    """Decompressed chunks of a (multi-frame) zstd stream; raises TruncatedStream if it ends mid-frame."""
    import zstandard

    return _frame_chunks(raw, lambda: zstandard.ZstdDecompressor().decompressobj(), "zstd", block)


def _gzip_chunks(raw, block: int = 1 << 20) -> Iterator[bytes]:
    """Decompressed chunks of a (multi-member) gzip stream; raises TruncatedStream if it ends mid-member."""
    return _frame_chunks(raw, lambda: zlib.decompressobj(wbits=16 + zlib.MAX_WBITS), "gzip", block)


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Byte lines of a stream of chunks; a stream that raises (a cut) does not yield its partial last line."""
    rest = b""
    for chunk in chunks:
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest


def metadata_description(text: str) -> str:
    """The long description of a dist-info METADATA file (its body, or the Description header)."""
    msg = email.parser.Parser().parsestr(text)
    body = msg.get_payload()
    if isinstance(body, str) and body.strip():
        return body.strip() + "\n"
    desc = msg.get("Description") or ""
    # old-style METADATA folds the description with 8 spaces + '|' continuation lines
    return re.sub(r"\n {7}\|", "\n", desc).strip() + ("\n" if desc.strip() else "")


class ListReader(CountingStep):
    """Yield Documents from an in-memory list of texts (benchmarks, tests); ids are '<source>/<index>'."""

    name = "read"
    type = "📖 - READER"

    def __init__(self, texts: list[str], source: str):
        super().__init__()
        self.texts, self.source = list(texts), source

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        for i in range(rank, len(self.texts), world_size):
            self.count_out(self.source)
            yield Document(
                text=self.texts[i], id=f"{self.source}/{i}", metadata={"source": self.source, "unit": 0, "row": i}
            )
