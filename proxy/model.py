"""Model presets (Qwen3-style decoders from transformers) and the DeMix model folder, owner of demix.json.

A model folder is a Hugging Face folder (config.json, model.safetensors, tokenizer files) plus
`demix.json`, read with `read_demix` and written with `write_demix` (always last, so its presence
marks a finished folder). A trained folder (`save_model_folder`: base, component, trained) holds

    {
      "kind": "component",                    # base | component | trained
      "mixture": {"name": ..., "level": "source", "ratios": {...}, "provenance": {...}},  # mixer.Mixture
      "tokens": 10000000,                     # tokens trained (all ranks); a checkpoint: its budget
      "db": "/abs/out/demo/manifest.duckdb",  # the corpus manifest trained on
      "base": "/abs/runs/base",               # the folder it continued from (null: from scratch)
      "seed": 0, "init": "/abs/runs/base",    # data/init seed; the preset, config or folder it started from
      "config": {"lr": 0.001, ...},           # the TrainConfig fields that determine the weights
      "plan_id": "...",                       # the mixer plan it read (final folder only)
      "checkpoints": {"2000000": "checkpoints/tokens-2000000"},  # budget folders (final folder only)
      "candidate": "code_high", "general_share": 0.5             # components only
    }

(`proxy train` adds "mixture_file"). A merged folder (proxy.merge.merge_to_folder) holds

    {
      "kind": "merged",
      "mixture": {"code_high": 0.5, ...},     # normalised weight per component
      "mixture_name": "mix",
      "merge": {"method": "linear", "dtype": null, "density": 0.5, "scale": 1.0},  # MergeSettings
      "components": {"code_high": "/abs/runs/components/code_high", ...},
      "tokens": 10000000, "db": "...", "base": "..."    # taken over from the components
    }
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from corpus.atomic import write_json_atomic
from corpus.errors import DemixError

if TYPE_CHECKING:
    from transformers import PretrainedConfig

DEMIX_FILE = "demix.json"
KINDS = ("base", "component", "trained")

# Shapes sized so that, at vocab 8192 with tied embeddings, tiny ~2M, small ~20M and base ~120M
# parameters (embedding included). Head/KV-group layout follows Qwen3 (GQA, qk-norm, SwiGLU).
PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        intermediate_size=384,
    ),
    "small": dict(
        hidden_size=384,
        num_hidden_layers=10,
        num_attention_heads=6,
        num_key_value_heads=2,
        head_dim=64,
        intermediate_size=1152,
    ),
    "base": dict(
        hidden_size=768,
        num_hidden_layers=14,
        num_attention_heads=12,
        num_key_value_heads=4,
        head_dim=64,
        intermediate_size=3072,
    ),
}


class ModelFolderError(DemixError, ValueError):
    """A model folder or config that is missing or inconsistent; the message names the path."""


def model_config(
    preset_or_path: str | os.PathLike, vocab_size: int, eos_id: int | None, max_position_embeddings: int = 4096
) -> PretrainedConfig:
    """A Qwen3Config for a preset name, or the config of an HF config.json / model folder.

    vocab_size and eos_id come from the corpus manifest; a folder's config keeps its own vocab
    when it is at least vocab_size. Raises ModelFolderError for an unknown preset or a vocab
    smaller than the corpus tokenizer's.
    """
    from transformers import AutoConfig, Qwen3Config  # noqa: PLC0415 - heavy (seconds): not for `proxy --help`

    name = str(preset_or_path)
    if name in PRESETS:
        return Qwen3Config(
            vocab_size=int(vocab_size),
            max_position_embeddings=max_position_embeddings,
            tie_word_embeddings=True,
            rope_theta=10000.0,
            rms_norm_eps=1e-6,
            attention_dropout=0.0,
            bos_token_id=eos_id,
            eos_token_id=eos_id,
            pad_token_id=eos_id,
            **PRESETS[name],
        )
    path = Path(name)
    if path.is_file() and path.name == "config.json":
        path = path.parent
    if not (path / "config.json").exists():
        raise ModelFolderError(
            f"--config: {name!r} is neither a preset ({', '.join(PRESETS)}) nor a folder/file with config.json"
        )
    config = AutoConfig.from_pretrained(path)
    if config.vocab_size < vocab_size:
        raise ModelFolderError(
            f"{path / 'config.json'}: vocab_size {config.vocab_size} < corpus vocab_size "
            f"{vocab_size}; the model cannot embed the corpus tokens"
        )
    if eos_id is not None:
        config.eos_token_id = eos_id
    return config


def build_model(config: PretrainedConfig, seed: int) -> torch.nn.Module:
    """A freshly initialised causal LM for `config`, deterministic for `seed` (fp32)."""
    from transformers import AutoModelForCausalLM, Qwen3Config, Qwen3ForCausalLM  # noqa: PLC0415 - heavy

    torch.manual_seed(seed)
    if isinstance(config, Qwen3Config):
        model = Qwen3ForCausalLM(config)
    else:
        model = AutoModelForCausalLM.from_config(config)
    return model.float()


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


def load_model(folder: str | os.PathLike | str, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """Load a model folder (or hub id) with AutoModelForCausalLM; safetensors only."""
    from transformers import AutoModelForCausalLM  # noqa: PLC0415 - heavy
    from transformers.utils import logging as hf_logging  # noqa: PLC0415 - heavy, imported when used

    hf_logging.disable_progress_bar()
    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, use_safetensors=True)


def read_demix(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The folder's demix.json, or None when the folder is absent or unfinished; raises ModelFolderError."""
    path = Path(folder) / DEMIX_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ModelFolderError(f"{path}: not valid JSON ({e})") from None


def write_demix(folder: str | os.PathLike, demix: dict[str, Any]) -> Path:
    """Write the folder's demix.json atomically (the last file of a finished folder); returns its path."""
    path = Path(folder) / DEMIX_FILE
    write_json_atomic(path, demix, sort_keys=True)
    return path


def save_model_folder(
    model: torch.nn.Module, folder: str | os.PathLike, *, tokenizer_dir: str | os.PathLike | None, demix: dict[str, Any]
) -> Path:
    """Save an HF folder (safetensors) + tokenizer files + demix.json; demix.json goes last.

    Files are written to a sibling temp folder and moved in, so a kill never leaves a folder
    that looks finished. Raises ModelFolderError on an unknown kind.
    """
    from transformers.utils import logging as hf_logging  # noqa: PLC0415 - heavy

    if demix.get("kind") not in KINDS:
        raise ModelFolderError(f"{folder}: demix.kind {demix.get('kind')!r} is not one of {', '.join(KINDS)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DEMIX_FILE).unlink(missing_ok=True)
    tmp = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp"
    model = getattr(model, "module", model)
    hf_logging.disable_progress_bar()  # one bar per run is enough; ours shows the training progress
    model.save_pretrained(tmp, safe_serialization=True)
    if tokenizer_dir is not None:
        for f in Path(tokenizer_dir).iterdir():
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
    for f in tmp.iterdir():
        os.replace(f, folder / f.name)
    tmp.rmdir()
    write_demix(folder, demix)
    return folder
