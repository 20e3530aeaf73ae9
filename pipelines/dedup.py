"""Exact and MinHash near-duplicate removal, as datatrove-shaped stages that each run as many tasks.

1. prepare tasks: `DedupSignature` (dedup_signature) attaches the content hash and LSH band hashes;
   `PreparedWriter` stores documents + hashes per part and, per part, sorted runs of the dedup keys
   partitioned by key range into `DedupPlan.shards` bucket shards (dedup_runs).
2. `DuplicateFinder` (one task per bucket shard, dedup_buckets): merges its key range of every run
   within `max_memory_mb`, finds repeated ids, exact copies and LSH candidates confirmed by the exact
   Jaccard similarity, and writes its groups as a forest (member -> root). The task that sees the last
   shard finish runs the cluster step (dedup_cluster): the forests merged into components by external
   sorts within `max_memory_mb` -> the drop list <work>/dedup.parquet,
   keyed by (prepared part, row). Ids are unique first (an id repeated within a source, as in
   re-crawled files, gets '#k' on its k-th repeat in input order); in each group the higher tier,
   then the smaller id, is kept. Nothing depends on the number of prepare or bucket tasks.
3. `PreparedReader` (shard tasks): reads the prepared documents back under their unique ids, minus
   the duplicates.

Scope (`dedup.scope`): documents are compared within their source (the default: the same text in two
sources is kept in both, a mixture weighs sources separately), their domain, or the whole corpus.

What this adds to datatrove's four-stage MinHash flow (signatures -> buckets -> cluster -> filter),
whose shape it follows: the bucket stage confirms candidates with the exact Jaccard similarity (the
0.9 threshold is exact rather than the LSH curve's approximation), exact dedup and repeated ids
ride the same runs, and the cluster step runs at the end of the bucket stage, so a build stays
three executor stages (prepare, dedup, shard).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import Document, DocumentsPipeline

from corpus.atomic import atomic_write
from corpus.recipe import DedupConfig
from pipelines.dedup_buckets import FOREST_SCHEMA, bucket_shard, unique_ids
from pipelines.dedup_cluster import DROP_SCHEMA, DedupError, DropList, cluster, drop_counts, read_drop_list
from pipelines.dedup_runs import DedupPlan, remove_runs, write_runs
from pipelines.dedup_signature import DedupSignature, MinHasher, content_hash, jaccard
from pipelines.stats import CountingStep

__all__ = [
    "DROP_SCHEMA",
    "FOREST_SCHEMA",
    "PREPARED_SCHEMA",
    "DedupError",
    "DedupPlan",
    "DedupSignature",
    "DropList",
    "DuplicateFinder",
    "MinHasher",
    "PreparedReader",
    "PreparedWriter",
    "content_hash",
    "drop_counts",
    "find_duplicates",
    "jaccard",
    "kept_records",
    "read_drop_list",
    "unique_ids",
]

# unit, row: the record's origin (input unit index in list order, record within it), to order repeated ids
PREPARED_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("id", pa.string()),
        ("text", pa.string()),
        ("hash", pa.string()),
        ("bands", pa.list_(pa.uint64())),
        ("unit", pa.int32()),
        ("row", pa.int64()),
    ]
)
RUN_COLUMNS = ["source", "id", "hash", "bands", "unit", "row"]
PART_DOCS = 50_000


class PreparedWriter(CountingStep):
    """Write this task's filtered documents and their hashes to <work>/prepared/<rank>_<part>.parquet.

    With a `DedupPlan`, each part's dedup runs are written beside it (the signature side of the
    bucket stage), so the dedup stage never reads the prepared parts whole.
    """

    name = "prepare_write"
    type = "💽 - WRITER"

    def __init__(self, folder: str, part_docs: int = PART_DOCS, plan: DedupPlan | None = None):
        super().__init__()
        self.folder, self.part_docs, self.plan = folder.rstrip("/"), part_docs, plan

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        fs, root = fsspec.core.url_to_fs(self.folder)
        fs.makedirs(root, exist_ok=True)
        for stale in fs.glob(f"{root}/{rank:05d}_*.parquet") + fs.glob(f"{root}/.tmp-*-{rank:05d}_*"):
            fs.rm(stale)  # a crashed attempt of this task: it is redone from the start
        if self.plan:
            remove_runs(self.plan, rank)
        buf: list[Document] = []
        part = 0
        for doc in data:
            buf.append(doc)
            if len(buf) >= self.part_docs:
                self._flush(fs, root, rank, part, buf)
                part, buf = part + 1, []
        self._flush(fs, root, rank, part, buf)
        return
        yield  # a generator that consumes the pipeline

    def _flush(self, fs, root: str, rank: int, part: int, docs: list[Document]) -> None:
        table = pa.table(
            {
                "source": [d.metadata["source"] for d in docs],
                "id": [d.id for d in docs],
                "text": [d.text for d in docs],
                "hash": [d.metadata["hash"] for d in docs],
                "bands": [d.metadata["bands"] for d in docs],
                "unit": [d.metadata["unit"] for d in docs],
                "row": [d.metadata["row"] for d in docs],
            },
            schema=PREPARED_SCHEMA,
        )
        with atomic_write(f"{root}/{rank:05d}_{part:05d}.parquet", "wb", fs=fs) as f:
            pq.write_table(table, f, compression="zstd")
        if self.plan:
            write_runs(self.plan, rank, part, table)


def _check_columns(fs, path: str) -> None:
    with fs.open(path, "rb") as f:
        names = pq.ParquetFile(f).schema_arrow.names
    missing = [c for c in RUN_COLUMNS if c not in names]
    if missing:
        raise DedupError(
            f"{path}: prepared part lacks column(s) {', '.join(missing)} (written by an older "
            "version); rebuild with --overwrite"
        )


def find_duplicates(prepared_folder: str, cfg: DedupConfig, shards: int = 1, plan: DedupPlan | None = None) -> pa.Table:
    """The drop list (DROP_SCHEMA) of a prepared folder, all stages in this process (tests, small corpora).

    Without a plan the runs are written from the prepared parts into a temporary folder, scope per source.
    """
    fs, root = fsspec.core.url_to_fs(prepared_folder)
    with tempfile.TemporaryDirectory(prefix="demix-dedup-") as tmp:
        if plan is None:
            plan = DedupPlan(tmp, shards)
            for path in sorted(fs.glob(f"{root}/[0-9]*.parquet")):
                _check_columns(fs, path)
                rank, part = (int(x) for x in path.rsplit("/", 1)[-1].removesuffix(".parquet").split("_"))
                with fs.open(path, "rb") as f:
                    write_runs(plan, rank, part, pq.read_table(f, columns=RUN_COLUMNS))
        for s in range(plan.shards):
            bucket_shard(plan, s, prepared_folder, cfg)
        cluster(plan, prepared_folder, f"{tmp}/dedup.parquet", cfg.exact)
        return pq.read_table(f"{tmp}/dedup.parquet")


class DuplicateFinder(CountingStep):
    """One task per bucket shard; the task that completes the last shard writes <work>/dedup.parquet.

    `finish` (picklable, no arguments) runs once after the drop list exists, in that same task.
    """

    name = "dedup"
    type = "🫂 - DEDUP"

    def __init__(
        self,
        prepared_folder: str,
        output: str,
        cfg: DedupConfig,
        plan: DedupPlan,
        finish: Callable[[], object] | None = None,
    ):
        super().__init__()
        self.prepared_folder, self.output, self.cfg, self.plan, self.finish = prepared_folder, output, cfg, plan, finish

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        if world_size != self.plan.shards:
            raise DedupError(f"dedup stage runs {world_size} tasks but the runs have {self.plan.shards} bucket shards")
        bucket_shard(self.plan, rank, self.prepared_folder, self.cfg)
        if not self._claim(rank):
            return
        try:
            cluster(self.plan, self.prepared_folder, self.output, self.cfg.exact)
            if self.finish:
                self.finish()
        except BaseException:
            fs, _ = fsspec.core.url_to_fs(self.plan.folder)
            fs.rm(f"{self.plan.folder}/cluster.claim")  # a rerun of any shard may cluster again
            raise

    def _claim(self, rank: int) -> bool:
        """True for exactly one task once every shard's edges are written (each task writes, then looks).

        The claim names its task, so a rerun of a task killed while clustering takes it over (datatrove
        never runs two attempts of one task at once).
        """
        fs, root = fsspec.core.url_to_fs(self.plan.folder)
        fs.invalidate_cache(f"{root}/shards")  # an object store's listing cache would hide a shard just written
        if len(fs.glob(f"{root}/shards/[0-9]*.parquet")) < self.plan.shards:
            return False
        claim = f"{root}/cluster.claim"
        try:
            # exclusive create ("x"): O_EXCL on a local or NFS folder, a conditional put where the object
            # store's fsspec backend has one (s3fs, gcsfs): one task wins
            with fs.open(claim, "xb") as f:
                f.write(str(rank).encode())
        except FileExistsError:
            return fs.cat_file(claim).decode().strip() == str(rank)
        return True


def kept_records(
    prepared_folder: str, drop_file: str | None, columns: tuple[str, ...] = ("source",)
) -> Iterator[tuple]:
    """(part path, pos, unique id, *columns) of every prepared record the drop list keeps, in file order.

    The drop list is read part by part (`DropList`): one part's decisions are held at a time.
    """
    fs, root = fsspec.core.url_to_fs(prepared_folder)
    with DropList(drop_file) if drop_file else contextlib.nullcontext() as drops:
        for path in sorted(fs.glob(f"{root}/[0-9]*.parquet")):
            decisions = drops.part(path.rsplit("/", 1)[-1]) if drops else {}
            t = pq.read_table(fs.open(path, "rb"), columns=["id", *columns])
            for i, (did, *values) in enumerate(zip(*(t.column(c).to_pylist() for c in ("id", *columns)))):
                uid, reason = decisions.get(i, (did, None))
                if reason is None:
                    yield (path, i, uid, *values)


class PreparedReader(CountingStep):
    """Read this task's prepared documents under their unique ids, dropping those the drop list names.

    Only the drop-list rows of the part being read are held (`DropList`), so a task's memory is set by
    its part size, not by the corpus's duplicates.
    """

    name = "dedup"
    type = "📖 - READER"

    def __init__(self, prepared_folder: str, drop_file: str):
        super().__init__()
        self.prepared_folder, self.drop_file = prepared_folder, drop_file

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        fs, root = fsspec.core.url_to_fs(self.prepared_folder)
        with DropList(self.drop_file) as drops:
            for path in sorted(fs.glob(f"{root}/{rank:05d}_*.parquet")):
                decisions = drops.part(path.rsplit("/", 1)[-1])
                t = pq.read_table(fs.open(path, "rb"), columns=["source", "id", "text"])
                for i, (src, did, text) in enumerate(zip(*(t.column(c).to_pylist() for c in ("source", "id", "text")))):
                    self.count_in(src)
                    uid, reason = decisions.get(i, (did, None))
                    if reason is not None:
                        self.count_drop(src, reason)
                        continue
                    if uid != did:
                        self.stat_update(f"{src}|renamed_repeated_id")  # a log counter, not a step_stats reason
                    self.count_out(src)
                    yield Document(text=text, id=uid, metadata={"source": src})
