"""Fine-tuning the detector's encoder: low-rank adapters (LoRA) on the MiniLM layers it runs,
trained together with the MLP and the lexical channel (``train_detector --adapter-rank``).

Why: over the frozen encoder's embeddings the MLP found no better than about 0.93 of the
out-of-fold injections at 1% false positives; what separates "a sentence aimed at the model"
from "a sentence about models" is phrasing the pretrained sentence embedding was never asked
to keep. Adapters let the encoder's own layers learn it. Why LoRA rather than training the
layers outright: about 110 thousand numbers to ship (float16, in the weights file) instead of
3.5 million, and a low-rank change keeps the encoder near the pretrained one, so it overfits
the training goals less. At load the adapters are merged into the weights (``W + B A``,
``embedding.MiniLM(deltas=...)``): inference costs what it cost before, int8 included.

The training model computes what inference computes (``classifier.Classifier``): the same
segments, mean and max pooling over each segment's tokens (padded here, packed there; the
padding is masked out of attention and pooling), the rules' evidence, the MLP, the lexical
channel's mean weight, and the text's score the highest of its segments'.
"""

from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch.nn import functional as F

if TYPE_CHECKING:
    from agentmesh._private.lexical import Bags

__all__ = ["LINEARS", "AdaptedDetector", "Segments", "train_adapted"]

#: The linear maps of a layer that get adapters: all of them (attention and feed-forward).
LINEARS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)


class Segments(NamedTuple):
    """What the model reads of every kept segment: token ids, the owning text, the text's rule
    evidence, and the segments' n-gram bags."""

    ids: list[list[int]]
    owner: torch.Tensor
    rules: torch.Tensor
    bags: Bags


class AdaptedDetector(torch.nn.Module):
    """The frozen encoder's first ``layers`` layers with rank-``rank`` adapters on every linear
    map, the MLP over (segment embedding, rule evidence), and the lexical channel."""

    def __init__(
        self,
        weights: dict[str, torch.Tensor],
        *,
        layers: int,
        rank: int,
        features: int,
        hidden: int,
        dropout: float,
        buckets: int,
    ) -> None:
        super().__init__()
        self.layers = layers
        self.frozen = {k: v.float() for k, v in weights.items() if v.is_floating_point()}
        self.lora = torch.nn.ParameterDict()
        for i in range(layers):
            for name in LINEARS:
                out_f, in_f = self.frozen[f"encoder.layer.{i}.{name}.weight"].shape
                self.lora[_key(i, name) + "_a"] = torch.nn.Parameter(
                    torch.randn(rank, in_f) / math.sqrt(in_f)
                )
                self.lora[_key(i, name) + "_b"] = torch.nn.Parameter(torch.zeros(out_f, rank))
        self.first = torch.nn.Linear(features, hidden)
        self.last = torch.nn.Linear(hidden, 1)
        self.drop = torch.nn.Dropout(dropout)
        self.lexical = torch.nn.EmbeddingBag(max(1, buckets), 1, mode="mean")
        torch.nn.init.zeros_(self.lexical.weight)

    def _linear(self, x: torch.Tensor, i: int, name: str) -> torch.Tensor:
        p, key = f"encoder.layer.{i}.{name}", _key(i, name)
        base = F.linear(x, self.frozen[p + ".weight"], self.frozen[p + ".bias"])
        return base + (x @ self.lora[key + "_a"].T) @ self.lora[key + "_b"].T

    def _norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        w = self.frozen
        return F.layer_norm(x, x.shape[-1:], w[name + ".weight"], w[name + ".bias"], 1e-12)

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean and max pooled, each unit-length (as ``MiniLM.embed_ids``), of padded ids."""
        w, (n, t) = self.frozen, ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:t]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        d = x.shape[-1]
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q, k, v = (
                self._linear(x, i, f"attention.self.{part}").view(n, t, -1, 32).transpose(1, 2)
                for part in ("query", "key", "value")
            )
            ctx = F.scaled_dot_product_attention(q, k, v, mask[:, None, None, :])
            ctx = ctx.transpose(1, 2).reshape(n, t, d)
            x = self._norm(
                self._linear(ctx, i, "attention.output.dense") + x, p + "attention.output.LayerNorm"
            )
            mid = F.gelu(self._linear(x, i, "intermediate.dense"))
            x = self._norm(self._linear(mid, i, "output.dense") + x, p + "output.LayerNorm")
        keep = mask[:, :, None].float()
        mean = F.normalize((x * keep).sum(1) / keep.sum(1), dim=1)
        peak = F.normalize(x.masked_fill(keep == 0, float("-inf")).amax(1), dim=1)
        return torch.cat([mean, peak], dim=1)

    def forward(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        rules: torch.Tensor,
        bag: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> torch.Tensor:
        """Segment logits (before calibration)."""
        rows = torch.cat([self.encode(ids, mask), rules], dim=1)
        logits = self.last(torch.relu(self.first(self.drop(rows)))).squeeze(1)
        return logits if bag is None else logits + self.lexical(*bag).squeeze(1)

    def head(self) -> dict[str, torch.Tensor]:
        """The MLP's and lexical channel's parameters, named as ``train_mlp`` names them."""
        return {
            "w1": self.first.weight.detach(),
            "b1": self.first.bias.detach(),
            "w2": self.last.weight.detach()[0],
            "b2": self.last.bias.detach()[0],
            "lexical": self.lexical.weight.detach()[:, 0],
        }

    def adapters(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The trained adapters ``(a, b)`` by the encoder weight they change (``W + b @ a``)."""
        names = [
            (f"encoder.layer.{i}.{n}.weight", _key(i, n))
            for i in range(self.layers)
            for n in LINEARS
        ]
        a = {weight: self.lora[key + "_a"].detach() for weight, key in names}
        b = {weight: self.lora[key + "_b"].detach() for weight, key in names}
        return a, b


def _key(layer: int, name: str) -> str:
    return f"l{layer}_{name.replace('.', '_')}"


def _padded(ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, ids))
    out = torch.zeros((len(ids), width), dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.bool)
    for row, seq in enumerate(ids):
        out[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = True
    return out, mask


def _logits(
    model: AdaptedDetector, data: Segments, picked: torch.Tensor, use_bags: bool
) -> torch.Tensor:
    ids, mask = _padded([data.ids[j] for j in picked.tolist()])
    bag = data.bags.take(picked) if use_bags else None
    return model(ids, mask, data.rules[picked], bag)


def train_adapted(
    data: Segments,
    texts: torch.Tensor,
    y: torch.Tensor,
    *,
    encoder: dict[str, torch.Tensor],
    layers: int,
    rank: int,
    hidden: int,
    epochs: int,
    seed: int,
    dropout: float = 0.1,
    weight_decay: float = 0.01,
    buckets: int = 0,
    batch: int = 32,
    adapter_lr: float = 1e-3,
    log_every: int = 50,
) -> AdaptedDetector:
    """Train adapters, MLP and lexical channel on the texts whose indices are ``texts`` (labels
    ``y`` indexed by text), through the max over each text's segments (as ``train_mlp``);
    AdamW, a linear warm-up and decay, classes weighted to count equally."""
    torch.manual_seed(seed)
    model = AdaptedDetector(
        encoder,
        layers=layers,
        rank=rank,
        features=data.rules.shape[1] + 768,
        hidden=hidden,
        dropout=dropout,
        buckets=buckets,
    )
    head = [*model.first.parameters(), *model.last.parameters(), *model.lexical.parameters()]
    optimiser = torch.optim.AdamW(
        [
            {"params": list(model.lora.parameters()), "lr": adapter_lr, "weight_decay": 0.0},
            {"params": head, "lr": 0.003, "weight_decay": weight_decay},
        ]
    )
    steps = epochs * math.ceil(len(texts) / batch)
    warm = min(100, steps // 5 + 1)  # warm-up steps, then a linear decay to zero
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / warm) * max(0.0, 1 - s / steps)
    )
    labels = y[texts]
    positives = float(labels.sum())
    loss_fn = torch.nn.BCEWithLogitsLoss(
        pos_weight=torch.tensor((len(labels) - positives) / positives)
    )
    order = torch.argsort(data.owner, stable=True)
    starts = torch.searchsorted(data.owner[order], torch.arange(len(y) + 1))
    model.train()
    started, step = time.perf_counter(), 0
    for _ in range(epochs):
        for chosen in texts[torch.randperm(len(texts))].split(batch):
            picked = torch.cat([order[starts[t] : starts[t + 1]] for t in chosen.tolist()])
            renumber = torch.full((len(y),), -1, dtype=torch.long)
            renumber[chosen] = torch.arange(len(chosen))
            logits = _logits(model, data, picked, buckets > 0)
            per_text = torch.full((len(chosen),), -1e9).scatter_reduce(
                0, renumber[data.owner[picked]], logits, reduce="amax", include_self=True
            )
            loss = loss_fn(per_text, y[chosen])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            step += 1
            if log_every and step % log_every == 0:
                took = time.perf_counter() - started
                print(f"step {step}/{steps} loss {loss.item():.3f} ({took:.0f} s)", file=sys.stderr)
    return model
