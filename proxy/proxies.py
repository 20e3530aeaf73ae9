"""In-memory proxies: K components stacked per parameter, each proxy one weighted sum into a preallocated model."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from proxy.components import Components, load_components
from proxy.merge import ratio_vector
from proxy.weights import CheckpointError, TensorFiles, check_compatible


class ProxyFactory:
    """Builds proxy models for mixture ratios with no disk I/O after construction.

    Memory: K x model parameters (stacked, float32 by default) + one model. On CUDA when available.
    """

    def __init__(
        self,
        components: Components | str | os.PathLike | Sequence[str | os.PathLike],
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        budget: int | None = None,
    ):
        from transformers import AutoModelForCausalLM  # noqa: PLC0415 - heavy import

        self.components = components if isinstance(components, Components) else load_components(components, budget)
        self.names = self.components.names
        self.device = (
            torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        )
        self.dtype = dtype
        files = [TensorFiles(p) for p in self.components.paths]
        check_compatible(self.components.paths, files)
        self.model = (
            AutoModelForCausalLM.from_pretrained(str(self.components.paths[0]), dtype=dtype, use_safetensors=True)
            .to(self.device)
            .eval()
        )
        self._stacked: list[tuple[torch.Tensor, torch.Tensor]] = []  # (param data [numel], stack [K, numel])
        stored = set(files[0].names)
        for pname, param in self.model.named_parameters():  # tied parameters appear once
            if pname not in stored:
                raise CheckpointError(
                    f"{self.components.paths[0]}: parameter {pname!r} of the model is not in its safetensors file"
                )
            stack = torch.empty((len(files), param.numel()), dtype=dtype, device=self.device)
            for i, f in enumerate(files):
                stack[i].copy_(f.get(pname).reshape(-1))
            param.requires_grad_(False)
            self._stacked.append((param.data.view(-1), stack))
        self._weights = torch.empty(1, len(files), dtype=dtype, device=self.device)
        self.ratios: np.ndarray | None = None

    @property
    def num_parameters(self) -> int:
        """Parameters of one proxy (tied counted once)."""
        return sum(p.numel() for p, _ in self._stacked)

    def proxy(self, ratios: Mapping[str, float] | Sequence[float]) -> torch.nn.Module:
        """The shared model, its weights set to sum_i r_i * theta_i (ratios normalized); raises MergeError."""
        vec = ratio_vector(ratios, self.names)
        self._weights.copy_(torch.as_tensor(vec, dtype=self.dtype).view(1, -1))
        with torch.no_grad():
            for flat, stack in self._stacked:
                torch.matmul(self._weights, stack, out=flat.view(1, -1))
        self.ratios = vec
        return self.model

    def state_dict_of(self, ratios: Mapping[str, float] | Sequence[float]) -> dict[str, torch.Tensor]:
        """A CPU copy of the proxy's state dict for `ratios` (for comparisons and saving)."""
        return {k: v.detach().to("cpu").clone() for k, v in self.proxy(ratios).state_dict().items()}
