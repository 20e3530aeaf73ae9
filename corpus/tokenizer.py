"""Tokenizers for a recipe: train a byte-level BPE, fetch a pretrained one, save as a Hugging Face folder, hash.

A pretrained tokenizer is a Hugging Face tokenizer folder (``tokenizer.json``, and ``tokenizer_config.json``
whose ``eos_token`` is the default end-of-document token when present), named three ways:

    tokenizer: {path: tokenizers/qwen3}            # a local folder (or its tokenizer.json)
    tokenizer: {path: "hf://Qwen/Qwen3-1.7B"}      # any fsspec URL: hf:// goes through HfFileSystem
    tokenizer: {hub: Qwen/Qwen3-1.7B}              # a Hub repository id: huggingface_hub's hf_hub_download

The recipe's ``tokenizer:`` section (`TokenizerSection` as written, `TokenizerSpec` resolved) lives here too.
The build keeps ``tokenizer.json``'s bytes as they were published, so its hash (`tokenizer_hash`) names
the same vocabulary here, in the shards' footers, in the manifest meta and on the Hub.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from corpus.config_check import ConfigChecker, rules
from corpus.errors import DemixError
from corpus.urls import is_url

DEFAULT_EOS = "<|endoftext|>"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"


class TokenizerError(DemixError):
    """A pretrained tokenizer that cannot be fetched or read; the message names where it was looked for."""


def train_bpe(texts: Iterable[str], vocab_size: int, eos_token: str = DEFAULT_EOS) -> Tokenizer:
    """Train a byte-level BPE (GPT-2 style pre-tokenization) with `eos_token` as special token 0."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[eos_token],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def save_tokenizer(
    tok: Tokenizer, folder: str | os.PathLike, eos_token: str = DEFAULT_EOS, name: str | None = None
) -> Path:
    """Write tokenizer.json plus the config files `AutoTokenizer.from_pretrained(folder)` expects."""
    return write_tokenizer_folder(folder, tok.to_str(pretty=True).encode("utf-8"), eos_token, name)


def write_tokenizer_folder(
    folder: str | os.PathLike, tokenizer_json: bytes, eos_token: str = DEFAULT_EOS, name: str | None = None
) -> Path:
    """Write `tokenizer_json` byte for byte (its hash stays the published one) and configs naming `eos_token`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / TOKENIZER_FILE).write_bytes(tokenizer_json)
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": eos_token,
        "bos_token": None,
        "pad_token": eos_token,
        "unk_token": None,
        "model_max_length": 1_000_000_000,
        "clean_up_tokenization_spaces": False,
        "name_or_path": name or folder.name,
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"eos_token": eos_token, "pad_token": eos_token}, indent=2)
    )
    return folder


def _tokenizer_json(path: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and path of tokenizer.json at `path` (the file, or a folder holding it; a path or URL)."""
    fs, p = fsspec.core.url_to_fs(str(path))
    if fs.isdir(p):
        p = f"{p.rstrip('/')}/{TOKENIZER_FILE}"
    if not fs.isfile(p):
        raise FileNotFoundError(f"{p if not is_url(str(path)) else str(path)}: no tokenizer.json")
    return fs, p


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load a tokenizer from a tokenizer.json file or a folder holding one (a path or any fsspec URL).

    Raises FileNotFoundError when there is none.
    """
    fs, p = _tokenizer_json(path)
    if isinstance(fs, LocalFileSystem):
        return Tokenizer.from_file(p)
    return Tokenizer.from_str(fs.cat_file(p).decode("utf-8"))


def tokenizer_hash(path: str | os.PathLike) -> str:
    """sha256 (16 hex chars) of tokenizer.json's bytes (a file or folder, path or URL): names the exact vocabulary."""
    fs, p = _tokenizer_json(path)
    return bytes_hash(fs.cat_file(p))


def bytes_hash(tokenizer_json: bytes) -> str:
    """`tokenizer_hash` of tokenizer.json bytes already in memory."""
    return hashlib.sha256(tokenizer_json).hexdigest()[:16]


def fetch_tokenizer(location: str, hub: bool = False, revision: str | None = None) -> tuple[bytes, dict[str, Any]]:
    """tokenizer.json's bytes and tokenizer_config.json's mapping ({} when absent) of a pretrained tokenizer.

    `location` is a folder or its tokenizer.json, as a local path or any fsspec URL, or with `hub` a Hub
    repository id (huggingface_hub's `hf_hub_download`, which uses and fills the local Hub cache).
    Raises TokenizerError naming the file that is missing or unreadable.
    """
    if hub:
        return _fetch_hub(location, revision)
    base = location.rstrip("/")
    json_url = base if base.endswith(".json") else f"{base}/{TOKENIZER_FILE}"
    config_url = f"{json_url.rsplit('/', 1)[0]}/{CONFIG_FILE}" if "/" in json_url else CONFIG_FILE
    try:
        with fsspec.open(json_url, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise TokenizerError(f"{json_url}: no tokenizer.json (a tokenizer folder must hold one)") from None
    except (OSError, ValueError, ImportError) as e:
        raise TokenizerError(f"{json_url}: cannot read: {e}") from None
    try:
        with fsspec.open(config_url, "rb") as f:
            config = _config_mapping(f.read(), config_url)
    except FileNotFoundError:
        config = {}
    return data, config


def _fetch_hub(repo_id: str, revision: str | None) -> tuple[bytes, dict[str, Any]]:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
    )

    where = f"{repo_id}@{revision}" if revision else repo_id
    try:
        data = Path(hf_hub_download(repo_id, TOKENIZER_FILE, revision=revision)).read_bytes()
    except (EntryNotFoundError, LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as e:
        raise TokenizerError(f"hub {where}: cannot fetch tokenizer.json: {type(e).__name__}: {e}") from None
    try:
        config = _config_mapping(
            Path(hf_hub_download(repo_id, CONFIG_FILE, revision=revision)).read_bytes(), f"hub {where}/{CONFIG_FILE}"
        )
    except (EntryNotFoundError, LocalEntryNotFoundError):
        config = {}  # a repository may publish tokenizer.json alone
    return data, config


def _config_mapping(raw: bytes, where: str) -> dict[str, Any]:
    try:
        config = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TokenizerError(f"{where}: not JSON: {e}") from None
    return config if isinstance(config, dict) else {}


def config_eos_token(config: dict[str, Any]) -> str | None:
    """The eos_token of a tokenizer_config.json mapping (a string, or transformers' AddedToken mapping)."""
    eos = config.get("eos_token")
    if isinstance(eos, dict):  # {"__type": "AddedToken", "content": "<|endoftext|>", ...}
        eos = eos.get("content")
    return eos if isinstance(eos, str) and eos else None


def parse_tokenizer(tokenizer_json: bytes, where: str) -> Tokenizer:
    """A Tokenizer from tokenizer.json bytes; raises TokenizerError naming `where` when they are not one."""
    try:
        return Tokenizer.from_str(tokenizer_json.decode("utf-8"))
    except Exception as e:  # noqa: BLE001 - tokenizers raises a bare Exception for malformed files
        raise TokenizerError(f"{where}: not a tokenizers tokenizer.json: {e}") from None


# ---------------------------------------------------------------------------------------------
# the recipe's tokenizer section


@dataclass(frozen=True)
class TokenizerTraining:
    """The recipe's ``tokenizer.train`` mapping: a byte-level BPE trained on a bounded, seeded sample of the kept
    documents (never the whole corpus: at most sample_docs documents and sample_bytes bytes of text)."""

    vocab_size: int = field(metadata=rules(ge=259))
    """Vocabulary size (tokens; at least the 256 bytes plus specials)."""
    sample_docs: int = field(default=20_000, metadata=rules(ge=1))
    """Documents sampled to train on, split evenly over sources (documents)."""
    sample_bytes: int = field(default=100_000_000, metadata=rules(ge=1))
    """UTF-8 bytes of text the sample holds at most (bytes; the BPE trainer's memory grows with it)."""
    seed: int = 0
    """Seed of the sample: which documents are drawn (an integer)."""


@dataclass(frozen=True)
class TokenizerSection:
    """The recipe's ``tokenizer:`` mapping as written; exactly one of path, hub, train. Becomes a TokenizerSpec."""

    path: str | None = None
    """A Hugging Face tokenizer folder or its tokenizer.json: a local path (relative to the recipe's folder;
    placeholders expand) or an fsspec URL such as ``hf://Qwen/Qwen3-1.7B``."""
    hub: str | None = field(
        default=None,
        metadata=rules(pattern=r"[\w.\-]+(/[\w.\-]+)?", hint="expected a Hub repository id such as Qwen/Qwen3-1.7B"),
    )
    """A Hugging Face Hub model repository id whose tokenizer.json (and tokenizer_config.json) is used."""
    revision: str | None = None
    """The Hub revision (a branch, tag or commit) of ``hub``; default the repository's main branch."""
    train: TokenizerTraining | None = None
    """Train a BPE on the recipe instead."""
    eos_token: str | None = None
    """The end-of-document token appended after every document (a token string; default: a local folder's
    tokenizer_config.json eos_token, else ``<|endoftext|>``). Must be in the vocabulary."""
    name: str | None = None
    """A display name for the tokenizer (default: the folder, hub id or bpe-<vocab>)."""


@dataclass(frozen=True)
class TokenizerSpec:
    """Where the tokenizer comes from: a pretrained folder (local or URL), a Hub id, or BPE trained on the recipe.

    ``file_hash`` is the hash of a local tokenizer.json read when the recipe loads, so the config hash changes
    when the file does; a URL or Hub tokenizer is named by its location and revision.
    """

    path: str | None = None
    """A pretrained folder or tokenizer.json: an absolute local path or an fsspec URL."""
    hub: str | None = None
    """A Hub model repository id."""
    revision: str | None = None
    """The Hub revision of ``hub`` (None: main)."""
    train_vocab_size: int | None = None
    """Vocabulary of the BPE to train (tokens; None: pretrained)."""
    train_sample_docs: int = 20_000
    """Documents the BPE trains on at most (documents)."""
    train_sample_bytes: int = 100_000_000
    """Text the BPE trains on at most (UTF-8 bytes)."""
    train_seed: int = 0
    """Seed of the training sample."""
    eos_token: str = DEFAULT_EOS
    """The end-of-document token, resolved (a token string)."""
    name: str | None = None
    """A display name."""
    file_hash: str | None = None
    """`tokenizer_hash` of a local tokenizer.json when the recipe loaded (16 hex chars; None otherwise)."""

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        if self.path:
            p = self.path.rstrip("/")
            p = p.rsplit("/", 1)[0] if p.endswith(".json") and "/" in p else p
            return p.rsplit("/", 1)[-1] if not is_url(p) else p
        if self.hub:
            return self.hub
        return f"bpe-{self.train_vocab_size}"


def tokenizer_spec(c: ConfigChecker, raw: Any, recipe_dir: Path, expand: Callable[[str], str]) -> TokenizerSpec:
    """The recipe's ``tokenizer:`` mapping as a TokenizerSpec (`expand` fills a path's placeholders).

    A local tokenizer folder is read here, so a missing tokenizer.json or an eos_token outside its vocabulary
    is refused when the recipe loads, before any work starts; a URL or Hub id is checked when fetched.
    """
    t = c.config(TokenizerSection, raw, "tokenizer")
    given = [k for k in ("path", "hub", "train") if getattr(t, k) is not None]
    if len(given) != 1:
        c.fail("tokenizer", f"give exactly one of path, hub, train (got {', '.join(given) or 'none'})")
    if t.revision is not None and t.hub is None:
        c.fail("tokenizer.revision", "applies to tokenizer.hub only (an hf:// path takes name@revision)")
    if t.train is not None:
        return TokenizerSpec(
            train_vocab_size=t.train.vocab_size,
            train_sample_docs=t.train.sample_docs,
            train_sample_bytes=t.train.sample_bytes,
            train_seed=t.train.seed,
            eos_token=t.eos_token or DEFAULT_EOS,
            name=t.name,
        )
    if t.hub is not None:
        return TokenizerSpec(hub=t.hub, revision=t.revision, eos_token=t.eos_token or DEFAULT_EOS, name=t.name)
    path = expand(t.path)
    if is_url(path):
        return TokenizerSpec(path=path, eos_token=t.eos_token or DEFAULT_EOS, name=t.name)
    path = path.removeprefix("file://")
    if not Path(path).is_absolute():
        path = str((recipe_dir / path).resolve())
    try:
        data, config = fetch_tokenizer(path)
        vocab = parse_tokenizer(data, path if path.endswith(".json") else f"{path}/tokenizer.json")
    except TokenizerError as e:
        c.fail("tokenizer.path", str(e), t.path)
    eos = t.eos_token or config_eos_token(config) or DEFAULT_EOS
    if vocab.token_to_id(eos) is None:
        origin = "" if t.eos_token else f"(the eos_token of {path}/tokenizer_config.json) "
        c.fail("tokenizer.eos_token", f"{origin}is not in the vocabulary of {path}/tokenizer.json", eos)
    return TokenizerSpec(path=path, eos_token=eos, name=t.name, file_hash=bytes_hash(data))
