"""Component checkpoints on disk: lazy safetensors access, compatibility checks, the files a merge copies."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from corpus.errors import DemixError
from proxy.model import DEMIX_FILE

WEIGHT_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# Files of a model folder that a merge rewrites instead of copying.
REWRITTEN = {WEIGHT_FILE, INDEX_FILE, DEMIX_FILE, "config.json"}
# Files a merged folder takes over from its first component: what AutoTokenizer and generate() read.
SIDE_FILE_PREFIXES = (
    "tokenizer",
    "special_tokens_map",
    "added_tokens",
    "vocab",
    "merges",
    "generation_config",
    "chat_template",
    "spiece",
    "sentencepiece",
)
# config.json fields that must agree for two checkpoints to be mergeable.
ARCH_FIELDS = (
    "model_type",
    "architectures",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "tie_word_embeddings",
)


class CheckpointError(DemixError, ValueError):
    """A component folder is missing, malformed, or incompatible with the others."""


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file as a dict; raises CheckpointError naming the file when it is missing or malformed."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None


class TensorFiles:
    """Lazy access to the tensors of one model folder (single or sharded safetensors), one tensor at a time."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        index = self.folder / INDEX_FILE
        if (self.folder / WEIGHT_FILE).exists():
            files = {WEIGHT_FILE}
            self._where: dict[str, str] | None = None
        elif index.exists():
            self._where = read_json(index)["weight_map"]
            files = set(self._where.values())
        else:
            raise CheckpointError(f"{self.folder}: no {WEIGHT_FILE} (pickled weights are not read)")
        self._handles = {f: safe_open(str(self.folder / f), framework="pt") for f in sorted(files)}
        self._names: list[str] = []
        self._file_of: dict[str, str] = {}
        for f, h in self._handles.items():
            for key in h.keys():
                self._names.append(key)
                self._file_of[key] = f
        self._names.sort()
        self._fds: dict[str, int] = {}
        self._spans: dict[str, int] = {}
        self._offsets: dict[str, list[int]] = {}

    def _data_start(self, file: str) -> int:
        if file not in self._spans:
            with open(self.folder / file, "rb") as fh:
                self._spans[file] = 8 + int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(self._spans[file] - 8))
                for key, info in header.items():
                    if key != "__metadata__":
                        self._offsets[key] = info["data_offsets"]
            self._fds[file] = os.open(self.folder / file, os.O_RDONLY)
        return self._spans[file]

    def read_into(self, name: str, out: torch.Tensor) -> torch.Tensor:
        """Read one tensor's bytes into `out` (contiguous, same dtype and shape) with one pread; returns out."""
        file = self._file_of[name]
        start = self._data_start(file)
        begin, end = self._offsets[name]
        view = memoryview(out.view(-1).view(torch.uint8).numpy())
        if view.nbytes != end - begin:
            raise CheckpointError(
                f"{self.folder / file}: {name}: {end - begin} bytes on disk, buffer holds {view.nbytes}"
            )
        done = 0
        while done < view.nbytes:  # a single read returns at most ~2 GiB on Linux
            got = os.preadv(self._fds[file], [view[done:]], start + begin + done)
            if got <= 0:
                raise CheckpointError(f"{self.folder / file}: {name}: short read ({done} of {view.nbytes} bytes)")
            done += got
        return out

    def close(self) -> None:
        """Close the file descriptors opened by read_into."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._spans.clear()

    @property
    def names(self) -> list[str]:
        """Tensor names, sorted."""
        return self._names

    def shape(self, name: str) -> tuple[int, ...]:
        """Shape of a tensor without reading it."""
        return tuple(self._handles[self._file_of[name]].get_slice(name).get_shape())

    def dtype(self, name: str) -> str:
        """safetensors dtype string (F32, BF16, F16) of a tensor without reading it."""
        return self._handles[self._file_of[name]].get_slice(name).get_dtype()

    def get(self, name: str) -> torch.Tensor:
        """Read one tensor (memory-mapped by safetensors)."""
        return self._handles[self._file_of[name]].get_tensor(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """config.json of a model folder as a dict; raises CheckpointError."""
    return read_json(Path(folder) / "config.json")


def check_compatible(folders: Sequence[str | os.PathLike], files: Sequence[TensorFiles] | None = None) -> None:
    """Raise CheckpointError naming the first architecture field or tensor (name/shape) where folders differ."""
    folders = [Path(f) for f in folders]
    files = list(files) if files is not None else [TensorFiles(f) for f in folders]
    ref_cfg = read_config(folders[0])
    for folder, tf in zip(folders[1:], files[1:]):
        cfg = read_config(folder)
        for key in ARCH_FIELDS:
            if ref_cfg.get(key) != cfg.get(key):
                raise CheckpointError(
                    f"architecture mismatch: config.json {key}={ref_cfg.get(key)!r} in {folders[0]} "
                    f"but {cfg.get(key)!r} in {folder}"
                )
        a, b = set(files[0].names), set(tf.names)
        for name in sorted(a | b):
            if name not in a or name not in b:
                has, lacks = (folders[0], folder) if name in a else (folder, folders[0])
                raise CheckpointError(f"tensor mismatch: {name!r} is in {has} but not in {lacks}")
            if files[0].shape(name) != tf.shape(name):
                raise CheckpointError(
                    f"tensor mismatch: {name!r} has shape {files[0].shape(name)} in {folders[0]} "
                    f"but {tf.shape(name)} in {folder}"
                )


def copy_side_files(src: str | os.PathLike, dst: str | os.PathLike) -> list[str]:
    """Copy the tokenizer and generation files of a model folder (not weights, logs or plans); returns their names."""
    src, dst = Path(src), Path(dst)
    copied = []
    for item in sorted(src.iterdir()):
        if item.is_file() and item.name.startswith(SIDE_FILE_PREFIXES) and item.name not in REWRITTEN:
            shutil.copy2(item, dst / item.name)
            copied.append(item.name)
    return copied
