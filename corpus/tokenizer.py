"""Tokenizers for a recipe: train a byte-level BPE, save it as a Hugging Face folder, load, hash."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers


def train_bpe(texts: Iterable[str], vocab_size: int, eos_token: str = "<|endoftext|>") -> Tokenizer:
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


def save_tokenizer(tok: Tokenizer, folder: str | os.PathLike, eos_token: str = "<|endoftext|>",
                   name: str | None = None) -> Path:
    """Write tokenizer.json plus the config files `AutoTokenizer.from_pretrained(folder)` expects."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
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
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (folder / "special_tokens_map.json").write_text(json.dumps({"eos_token": eos_token, "pad_token": eos_token}, indent=2))
    return folder


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load a tokenizer from a tokenizer.json file or a folder holding one; raises FileNotFoundError."""
    p = Path(path)
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.exists():
        raise FileNotFoundError(f"{p}: no tokenizer.json")
    return Tokenizer.from_file(str(p))


def tokenizer_hash(path: str | os.PathLike) -> str:
    """sha256 (16 hex chars) of tokenizer.json's bytes: names the exact vocabulary and merges."""
    p = Path(path)
    if p.is_dir():
        p = p / "tokenizer.json"
    return hashlib.sha256(p.read_bytes()).hexdigest()[:16]
