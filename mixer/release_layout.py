"""The file layout of a release, planned from the plan's numbers alone before anything is written.

Every config is cut into files by position, not by what a file happens to hold, so any file can be
written (or rewritten after a kill) on its own:

- a source config (its documents once) cuts its stream at every ``file_tokens`` stream tokens: file
  ``i`` holds the documents that start in ``[i F, (i + 1) F)``;
- the ``mixture`` config (documents in sampler order) and each ``sample-<N>`` config (the sampler's
  first sequences, as rows) cut the slot sequence at every ``file_tokens // seq_len`` slots.

The Hub's published limits are checked on that layout (files per repository, files per folder,
bytes per file, from an upper estimate of bytes per token), so a release that cannot be pushed is
refused before its first byte, naming the limit. A config of more files than fit in one folder is
spread over numbered subfolders (``data/<config>/0000/train-00000.parquet``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from corpus import format_tokens
from corpus.errors import DemixError

HUB_MAX_FILES = 100_000
"""Files per Hub repository (the Hub asks for fewer than this)."""
HUB_MAX_FILES_PER_FOLDER = 10_000
"""Entries per folder of a Hub repository (fewer than this)."""
HUB_MAX_FILE_BYTES = 20 * 10**9
"""Bytes per file on the Hub (files must stay under 20 GB)."""
FILES_PER_FOLDER = 5_000
"""Files per subfolder once a config outgrows one folder (well under the per-folder limit)."""
FILE_TOKENS = 64_000_000
"""Stream tokens per Parquet file (about 0.5 GB at BYTES_PER_TOKEN)."""
BYTES_PER_TOKEN = 8
"""Upper estimate of one released token in zstd Parquet: its uint32 id plus its share of the text."""
EXTRA_FILES = 8
"""Files besides the data: README.md, the marker, .gitattributes and the tokenizer's files."""


class LayoutError(DemixError, ValueError):
    """A release that would break a Hub limit or has no room for its configs; names the limit and the numbers."""


@dataclass(frozen=True)
class ReleaseFile:
    """One file of a release folder: path relative to the folder, size in bytes (an estimate in a dry run)."""

    path: str
    n_bytes: int


@dataclass(frozen=True)
class ConfigLayout:
    """One config of the release: what it holds and how it is cut into files."""

    name: str
    """Config name: a source name, ``mixture`` or ``sample-<N>``."""
    kind: str
    """``source`` (documents once), ``mixture`` (documents in sampler order) or ``sample`` (sequences)."""
    source: int | None
    """Index of the plan source (kind ``source``), else None."""
    span: int
    """Stream tokens (kind ``source``) or slots (``mixture``, ``sample``) the config covers."""
    per_file: int
    """Stream tokens (``source``) or slots per file."""

    @property
    def n_files(self) -> int:
        """Files of this config (at least one, so an empty config still loads)."""
        return max(1, -(-self.span // self.per_file))

    @property
    def nested(self) -> bool:
        """True when the files are spread over numbered subfolders."""
        return self.n_files > FILES_PER_FOLDER

    def path(self, i: int) -> str:
        """Path of file ``i`` inside the release folder."""
        sub = f"/{i // FILES_PER_FOLDER:04d}" if self.nested else ""
        return f"data/{self.name}{sub}/train-{i:05d}.parquet"

    def span_of(self, i: int) -> tuple[int, int]:
        """``[start, stop)`` in stream tokens or slots that file ``i`` covers."""
        return i * self.per_file, min(self.span, (i + 1) * self.per_file)

    @property
    def glob(self) -> str:
        """The ``data_files`` pattern of this config in the card."""
        return f"data/{self.name}/*/train-*.parquet" if self.nested else f"data/{self.name}/train-*.parquet"


@dataclass(frozen=True)
class ReleaseLayout:
    """Every config and file of a release, and the numbers the Hub limits are checked on."""

    configs: tuple[ConfigLayout, ...]
    file_tokens: int
    bytes_per_token: int

    @property
    def n_files(self) -> int:
        """Data files plus EXTRA_FILES."""
        return sum(c.n_files for c in self.configs) + EXTRA_FILES

    @property
    def largest_file_bytes(self) -> int:
        """Estimated bytes of the largest file (file_tokens at bytes_per_token)."""
        return self.file_tokens * self.bytes_per_token

    def check(self) -> None:
        """Raise LayoutError naming the first Hub limit the layout breaks."""
        if self.n_files >= HUB_MAX_FILES:
            biggest = max(self.configs, key=lambda c: c.n_files)
            raise LayoutError(
                f"the release would hold {self.n_files:,} files; the Hub allows fewer than "
                f"{HUB_MAX_FILES:,} files per repository (largest config {biggest.name!r}: "
                f"{biggest.n_files:,} files at {format_tokens(self.file_tokens)} tokens each). Use "
                "larger files (--file-tokens), cap the mixture (--mixture-max-tokens) or release "
                "fewer sources"
            )
        if len(self.configs) >= HUB_MAX_FILES_PER_FOLDER:
            raise LayoutError(
                f"data/ would hold {len(self.configs):,} config folders; the Hub allows fewer than "
                f"{HUB_MAX_FILES_PER_FOLDER:,} entries per folder"
            )
        if self.largest_file_bytes >= HUB_MAX_FILE_BYTES:
            raise LayoutError(
                f"files of {format_tokens(self.file_tokens)} tokens would be about "
                f"{self.largest_file_bytes / 1e9:,.1f} GB at {self.bytes_per_token} bytes per token; "
                f"the Hub allows files under {HUB_MAX_FILE_BYTES // 10**9} GB"
            )


def sample_name(tokens: int) -> str:
    """``sample-10B`` for 10_000_000_000: the largest unit that divides the count exactly, else the integer."""
    for unit, scale in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if tokens % scale == 0:
            return f"sample-{tokens // scale}{unit}"
    return f"sample-{tokens}"


def plan_layout(
    source_names: Sequence[str],
    source_tokens: Sequence[int],
    n_slots: int,
    seq_len: int,
    *,
    mixture_slots: int,
    samples: Sequence[int] = (),
    file_tokens: int = FILE_TOKENS,
    bytes_per_token: int = BYTES_PER_TOKEN,
) -> ReleaseLayout:
    """Plan every file of a release and check it against the Hub limits (raises LayoutError).

    ``source_tokens[s]`` is the stream tokens source ``s`` releases once (0: no config);
    ``mixture_slots`` the slots of the mixture config; ``samples`` the token counts of the
    ``sample-<N>`` configs (each at least one sequence and at most the stream).
    """
    if file_tokens < seq_len:
        raise LayoutError(f"file_tokens: {file_tokens:,} is less than one sequence of {seq_len} tokens")
    slots_per_file = file_tokens // seq_len
    configs = [
        ConfigLayout(name, "source", s, tokens, file_tokens)
        for s, (name, tokens) in enumerate(zip(source_names, source_tokens))
        if tokens > 0
    ]
    configs.append(ConfigLayout("mixture", "mixture", None, mixture_slots, slots_per_file))
    for n in sorted(set(samples)):
        if not seq_len <= n <= n_slots * seq_len:
            raise LayoutError(
                f"--samples: {format_tokens(n)} ({n:,} tokens) must be at least one sequence "
                f"({seq_len} tokens) and at most the stream ({n_slots * seq_len:,} tokens)"
            )
        configs.append(ConfigLayout(sample_name(n), "sample", None, n // seq_len, slots_per_file))
    layout = ReleaseLayout(tuple(configs), file_tokens, bytes_per_token)
    layout.check()
    return layout


def estimate_bytes(layout: ReleaseLayout, seq_len: int) -> int:
    """Upper estimate of the data bytes of a layout (for a dry run's summary)."""
    tokens = sum(c.span * (seq_len if c.kind != "source" else 1) for c in layout.configs)
    return int(math.ceil(tokens * layout.bytes_per_token))
