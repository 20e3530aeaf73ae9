"""Synthetic components (one random base + perturbed copies) in the components.json layout, for tests and benches."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from proxy.components import write_components_file
from proxy.model import write_demix


def tiny_qwen3_config(
    vocab_size: int = 384,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    intermediate_size: int = 64,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    tie_word_embeddings: bool = True,
    eos_id: int | None = None,
) -> Any:
    """A Qwen3Config of the given shape (head_dim = hidden / heads)."""
    from transformers import Qwen3Config  # noqa: PLC0415 - heavy, imported when used

    return Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        intermediate_size=intermediate_size,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        head_dim=hidden_size // num_attention_heads,
        tie_word_embeddings=tie_word_embeddings,
        max_position_embeddings=1024,
        eos_token_id=eos_id,
        bos_token_id=eos_id,
        pad_token_id=eos_id,
    )


def write_synthetic_components(
    out: str | os.PathLike,
    names: Sequence[str],
    config: Any | None = None,
    *,
    seed: int = 0,
    noise: float = 0.02,
    dtype: torch.dtype = torch.float32,
    tokenizer_dir: str | os.PathLike | None = None,
    db: str | None = None,
) -> Path:
    """Write <out>/base, <out>/<name> for each name (base + seeded Gaussian noise) and <out>/components.json.

    Weights are safetensors in `dtype`; the tokenizer folder's files are copied into each model folder.
    """
    from transformers import Qwen3ForCausalLM  # noqa: PLC0415 - heavy, imported when used

    out = Path(out)
    config = config or tiny_qwen3_config()
    torch.manual_seed(seed)
    base = Qwen3ForCausalLM(config).to(dtype)
    base_state = {k: v.detach().clone() for k, v in base.state_dict().items()}

    def save(model: torch.nn.Module, folder: Path, demix: dict[str, Any]) -> None:
        model.save_pretrained(folder, safe_serialization=True)
        if tokenizer_dir is not None:
            for f in Path(tokenizer_dir).iterdir():
                if f.is_file():
                    shutil.copy2(f, folder / f.name)
        write_demix(folder, demix)

    base_dir = out / "base"
    save(base, base_dir, {"kind": "base", "mixture": {}, "tokens": 0, "db": db, "base": None})
    gen = torch.Generator().manual_seed(seed + 1)
    candidates = {}
    for name in names:
        state = {k: (v.float() + noise * torch.randn(v.shape, generator=gen)).to(dtype) for k, v in base_state.items()}
        base.load_state_dict(state)
        save(
            base,
            out / name,
            {
                "kind": "component",
                "mixture": {name: 0.5, "general": 0.5},
                "tokens": 1000,
                "db": db,
                "base": str(base_dir.resolve()),
            },
        )
        candidates[name] = {"path": name, "tokens": 1000, "checkpoints": {"1000": name}}
    spec = {"base": str(base_dir.resolve()), "db": db, "general_share": 0.5, "tokens": 1000, "candidates": candidates}
    write_components_file(out, spec)
    return out
