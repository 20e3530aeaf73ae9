"""One source's token stream: its documents in a seeded order per epoch, joined with EOS, read by offset.

The stream of a source is epoch 0, epoch 1, ... back to back; an epoch is every train document of
the source once, each followed by EOS. Its order is seeded by (seed, source, epoch): the shards are
permuted, the row groups inside each shard are permuted, and the documents inside each row group
are permuted. The row group is the shuffle window, so memory stays bounded (one block per source
plus what is prefetched) while any token offset maps to (epoch, shard, row group) by arithmetic on
the shard sizes the plan records and the per-row-group sizes of the shard's ``n_tokens`` column.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from typing import Any

import fsspec
import numpy as np
import pyarrow.parquet as pq

from corpus.errors import DemixError
from corpus.urls import join_url
from manifests import file_sha256

MAX_BLOCKS = 2  # per source: the block being read and the next one, prefetched


class StreamError(DemixError, RuntimeError):
    """A shard that disagrees with the plan (missing, changed, checksum mismatch); names the shard."""


class SourceStream:
    """Random access by token offset into one source's seeded, epoch-repeating, EOS-joined stream."""

    def __init__(
        self,
        name: str,
        shards: Sequence[dict[str, Any]],
        root: str,
        seed: int,
        eos_id: int,
        verify: bool = False,
        executor: Executor | None = None,
    ):
        if not shards:
            raise StreamError(f"source {name!r}: the plan lists no shards")
        for sh in shards:
            if sh["path"].split("/")[0] == "validation":
                raise StreamError(f"source {name!r}: {sh['path']} is a validation shard; the sampler reads train only")
        self.name = name
        self.shards = list(shards)
        self.root = root
        self.seed = int(seed)
        self.key = zlib.crc32(name.encode())
        self.eos_id = int(eos_id)
        self.verify = verify
        self.executor = executor
        self.sizes = np.array([int(s["n_tokens"]) + int(s["n_docs"]) for s in self.shards], dtype=np.int64)
        self.epoch_len = int(self.sizes.sum())
        if self.epoch_len == 0:
            raise StreamError(f"source {name!r}: its shards hold no tokens")
        self._order_epoch = -1
        self._order: np.ndarray = np.empty(0, dtype=np.int64)
        self._cum: np.ndarray = np.empty(0, dtype=np.int64)
        self._layouts: dict[int, np.ndarray] = {}
        self._footers: dict[int, Any] = {}
        self._blocks: OrderedDict[tuple[int, int, int], Future | np.ndarray] = OrderedDict()
        self._rg_orders: dict[tuple[int, int], np.ndarray] = {}
        self._cur: tuple[tuple[int, int, int], int, int] | None = None
        self._cur_block: np.ndarray | None = None
        self._prefetched: tuple[int, int, int] | None = None

    # -- layout ---------------------------------------------------------------------------------
    def _rng(self, *keys: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.key, *keys])

    def open_shard(self, i: int) -> pq.ParquetFile:
        """Open shard ``i`` through fsspec (its footer cached after the first open); raises StreamError."""
        url = join_url(self.root, self.shards[i]["path"])
        fs, path = fsspec.core.url_to_fs(url)
        try:
            return pq.ParquetFile(path, filesystem=fs, metadata=self._footers.get(i))
        except FileNotFoundError:
            raise StreamError(f"source {self.name!r}: shard {url} not found") from None

    def layout(self, i: int) -> np.ndarray:
        """Stream tokens (document tokens + one EOS each) per row group of shard ``i``; checked against the plan."""
        if i not in self._layouts:
            sh = self.shards[i]
            if self.verify and sh.get("sha256"):
                url = join_url(self.root, sh["path"])
                fs, path = fsspec.core.url_to_fs(url)
                digest = file_sha256(path, fs)
                if digest != sh["sha256"]:
                    raise StreamError(f"source {self.name!r}: shard {url} sha256 {digest} != plan {sh['sha256']}")
            pf = self.open_shard(i)
            self._footers[i] = pf.metadata  # later opens of this shard skip parsing the footer
            n_tokens = np.asarray(pf.read(columns=["n_tokens"]).column("n_tokens").combine_chunks(), dtype=np.int64)
            rows = np.array([pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)], dtype=np.int64)
            bounds = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
            cum = np.concatenate([[0], np.cumsum(n_tokens)]).astype(np.int64)
            sizes_arr = cum[bounds[1:]] - cum[bounds[:-1]] + rows
            if int(sizes_arr.sum()) != int(self.sizes[i]):
                raise StreamError(
                    f"source {self.name!r}: shard {sh['path']} holds {int(sizes_arr.sum())} stream "
                    f"tokens, the plan says {int(self.sizes[i])} (rebuilt since the plan was resolved?)"
                )
            self._layouts[i] = sizes_arr
        return self._layouts[i]

    def shard_order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(permuted shard indices, cumulative stream tokens at each one's end) for ``epoch``."""
        if epoch != self._order_epoch:
            self._order = self._rng(epoch).permutation(len(self.shards))
            self._cum = np.cumsum(self.sizes[self._order])
            self._order_epoch = epoch
        return self._order, self._cum

    def row_group_order(self, epoch: int, i: int) -> np.ndarray:
        """Permuted row-group indices of shard ``i`` in ``epoch``."""
        if (epoch, i) not in self._rg_orders:
            if len(self._rg_orders) > 4 * len(self.shards):
                self._rg_orders.clear()
            self._rg_orders[(epoch, i)] = self._rng(epoch, i).permutation(len(self.layout(i)))
        return self._rg_orders[(epoch, i)]

    def locate(self, offset: int) -> tuple[tuple[int, int, int], int, int]:
        """Map a stream offset to (block key (epoch, shard, row group), block start offset, block length)."""
        epoch, within = divmod(int(offset), self.epoch_len)
        order, cum = self.shard_order(epoch)
        pos = int(np.searchsorted(cum, within, side="right"))
        i = int(order[pos])
        shard_start = int(cum[pos] - self.sizes[i])
        sizes = self.layout(i)
        rgs = self.row_group_order(epoch, i)
        rg_cum = np.cumsum(sizes[rgs])
        r = int(np.searchsorted(rg_cum, within - shard_start, side="right"))
        g = int(rgs[r])
        start = epoch * self.epoch_len + shard_start + int(rg_cum[r] - sizes[g])
        return (epoch, i, g), start, int(sizes[g])

    # -- blocks ---------------------------------------------------------------------------------
    def doc_permutation(self, key: tuple[int, int, int], n_docs: int) -> np.ndarray:
        """The seeded order of the ``n_docs`` documents of row group ``key = (epoch, shard, row group)``."""
        return self._rng(*key, 1).permutation(n_docs)

    def load_block(self, key: tuple[int, int, int]) -> np.ndarray:
        """Read one row group's tokens and write its documents in seeded order, EOS after each (uint32)."""
        _, i, g = key
        col = self.open_shard(i).read_row_group(g, columns=["tokens"]).column("tokens").combine_chunks()
        values = np.asarray(col.values)
        offsets = np.asarray(col.offsets).tolist()
        eos = np.full(1, self.eos_id, dtype=values.dtype if len(values) else np.uint32)
        # one memcpy per document slice: measured cheaper than a per-token fancy-index gather
        parts: list[np.ndarray] = []
        for d in self.doc_permutation(key, len(offsets) - 1).tolist():
            parts.append(values[offsets[d] : offsets[d + 1]])
            parts.append(eos)
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.uint32)

    def _block(self, key: tuple[int, int, int]) -> np.ndarray:
        item = self._blocks.get(key)
        if item is None:
            item = self.load_block(key)
        elif isinstance(item, Future):
            item = item.result()
        self._blocks[key] = item
        self._blocks.move_to_end(key)
        while len(self._blocks) > MAX_BLOCKS:
            self._blocks.popitem(last=False)
        return item

    def prefetch(self, offset: int) -> None:
        """Start reading the block that holds ``offset`` in the background (no-op without an executor)."""
        if self.executor is None:
            return
        key, _, _ = self.locate(offset)
        if key not in self._blocks:
            self._blocks[key] = self.executor.submit(self.load_block, key)

    def read(self, start: int, length: int, limit: int | None = None) -> np.ndarray:
        """Tokens ``[start, start + length)`` of the stream (uint32); prefetches the next block below ``limit``."""
        cur, block = self._cur, self._cur_block
        if cur is not None and block is not None and cur[1] <= start and start + length <= cur[1] + cur[2]:
            off = start - cur[1]  # the common case: the sequence lies inside the current block
            if off >= cur[2] // 2 and self._prefetched != cur[0] and (limit is None or cur[1] + cur[2] < limit):
                self._prefetched = cur[0]
                self.prefetch(cur[1] + cur[2])
            return block[off : off + length]
        parts = []
        pos, end = int(start), int(start) + int(length)
        while pos < end:
            cur = self._cur
            if cur is None or not cur[1] <= pos < cur[1] + cur[2]:
                cur = self._cur = self.locate(pos)
            key, bstart, blen = cur
            block = self._cur_block = self._block(key)
            take = min(end, bstart + blen) - pos
            parts.append(block[pos - bstart : pos - bstart + take])
            pos += take
            nxt = bstart + blen
            # start reading the next block once this one is half consumed, so it is ready in time
            if self._prefetched != key and pos - bstart >= blen // 2 and (limit is None or nxt < limit):
                self._prefetched = key
                self.prefetch(nxt)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
