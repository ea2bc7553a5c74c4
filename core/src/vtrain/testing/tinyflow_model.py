"""The tiny denoiser of the ``tinyflow`` family: a token MLP with timestep and class conditioning."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class TinyBlock(nn.Module):
    """A residual MLP block over tokens, modulated by the conditioning vector."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.to_hidden = nn.Linear(width, 2 * width)
        self.to_out = nn.Linear(2 * width, width)
        self.to_scale = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.norm(x) * (1 + self.to_scale(cond).unsqueeze(1))
        return x + self.to_out(torch.nn.functional.gelu(self.to_hidden(h)))


class TinyFlowModel(nn.Module):
    """Predicts the flow-matching velocity for latents ``(B, C, F, H, W)``."""

    def __init__(self, channels: int = 4, width: int = 32, depth: int = 2, num_classes: int = 8) -> None:
        super().__init__()
        self.config = {"channels": channels, "width": width, "depth": depth, "num_classes": num_classes}
        self.proj_in = nn.Linear(channels, width)
        self.time_embed = nn.Linear(16, width)
        self.class_embed = nn.Embedding(num_classes, width)
        self.blocks = nn.ModuleList(TinyBlock(width) for _ in range(depth))
        self.norm_out = nn.LayerNorm(width)
        self.proj_out = nn.Linear(width, channels)
        self.gradient_checkpointing = False
        self.captured: list[torch.Tensor] | None = None

    def forward(self, x: torch.Tensor, sigmas: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        dtype = self.proj_in.weight.dtype
        tokens = x.permute(0, 2, 3, 4, 1).reshape(b, f * h * w, c).to(dtype)
        freqs = torch.exp(-math.log(1000.0) * torch.arange(8, device=x.device, dtype=torch.float32) / 8)
        angles = sigmas.float().unsqueeze(1) * 1000.0 * freqs
        temb = torch.cat([angles.sin(), angles.cos()], dim=1).to(dtype)
        cond = self.time_embed(temb) + self.class_embed(labels)
        hidden = self.proj_in(tokens)
        for block in self.blocks:
            if self.gradient_checkpointing and self.training:
                hidden = checkpoint(block, hidden, cond, use_reentrant=False)
            else:
                hidden = block(hidden, cond)
            if self.captured is not None:
                self.captured.append(hidden.view(b, f, h * w, -1))
        out = self.proj_out(self.norm_out(hidden))
        return out.reshape(b, f, h, w, c).permute(0, 4, 1, 2, 3).float()

    def save_pretrained(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(self.config, indent=2))
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / "model.safetensors"))

    @classmethod
    def from_pretrained(cls, folder: str | Path, dtype: Any = None) -> TinyFlowModel:
        from safetensors.torch import load_file

        folder = Path(folder)
        model = cls(**json.loads((folder / "config.json").read_text()))
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        return model.to(dtype) if dtype is not None else model
