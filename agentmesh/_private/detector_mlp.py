"""The frozen-encoder recipe of ``train_detector`` (``--adapter-rank 0``): a one-hidden-layer
MLP and the lexical channel over cached MiniLM segment embeddings.

Cheap (two minutes for five folds on two cores, once the embeddings are cached), so it can
afford out-of-fold scores for every training text; ``finetune.py`` trains the encoder too.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from agentmesh._private.embedding import load_minilm
from agentmesh._private.lexical import Bags

if TYPE_CHECKING:
    import torch

    from agentmesh._private.embedding import MiniLM
    from agentmesh._private.train_detector import SegmentTable

__all__ = ["Rows", "segment_rows", "subset", "text_scores", "train_mlp"]


class Rows(NamedTuple):
    """Segment feature rows of many texts: ``owner[i]`` is the text that row ``i`` belongs to,
    ``rank[i]`` its place in the cue order (a text keeps its segments of rank < max_segments).
    """

    x: torch.Tensor
    owner: torch.Tensor
    rank: torch.Tensor


def segment_rows(
    table: SegmentTable,
    *,
    max_tokens: int,
    pooling: str,
    layers: int | None = None,
    cache: Path | None = None,
) -> Rows:
    """Feature rows (segment embedding + the text's rule evidence) for every segment of
    ``table``; segment embeddings are kept in the file ``cache`` (when given) across runs."""
    import torch

    encoder = load_minilm(max_tokens=max_tokens, pooling=pooling, layers=layers)
    embedded = _embeddings(encoder, table.texts, cache)
    x = torch.cat([embedded, torch.tensor(table.rules)], dim=1)
    return Rows(x, torch.tensor(table.owner), torch.tensor(table.rank))


def _embeddings(encoder: MiniLM, texts: list[str], cache: Path | None) -> torch.Tensor:
    """The embedding of each text. Each distinct text is embedded alone, so its embedding
    depends on nothing else (not on which texts were cached or batched with it): reruns and
    cached runs give the same rows. ``cache`` maps texts to embeddings for these settings."""
    import torch

    store: dict[str, torch.Tensor] = {}
    if cache is not None and cache.is_file():
        known, table = torch.load(cache)
        store = dict(zip(known, table, strict=True))
    missing = sorted(set(texts) - store.keys())
    for text in missing:
        store[text] = encoder.embed([text])[0]
    if cache is not None and missing:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save((list(store), torch.stack(list(store.values()))), cache)
    return torch.stack([store[t] for t in texts]) if texts else torch.zeros((0, encoder.dim))


def _text_logits(logits: torch.Tensor, owner: torch.Tensor, n: int) -> torch.Tensor:
    """Each text's logit: the highest of its segments'."""
    import torch

    out = torch.full((n,), -1e9)
    return out.scatter_reduce(0, owner, logits, reduce="amax", include_self=True)


def train_mlp(
    rows: Rows,
    y: torch.Tensor,
    *,
    hidden: int,
    epochs: int,
    seed: int,
    dropout: float = 0.3,
    weight_decay: float = 0.01,
    batch: int = 256,
    bags: Bags | None = None,
    buckets: int = 0,
) -> dict[str, torch.Tensor]:
    """A one-hidden-layer MLP on segments, trained on the texts' labels through the max over
    each text's segments (multiple-instance learning); mini-batches of ``batch`` texts, AdamW,
    dropout on the inputs, classes weighted to count equally. With ``bags`` (aligned with the
    rows), a hashed linear model over the segments' n-grams (``lexical.py``) is trained with it,
    its mean weight added to the segment's logit; its weights start at zero, so a bucket that
    no training n-gram hashes to stays zero."""
    import torch

    torch.manual_seed(seed)
    first, last = torch.nn.Linear(rows.x.shape[1], hidden), torch.nn.Linear(hidden, 1)
    model = torch.nn.Sequential(torch.nn.Dropout(dropout), first, torch.nn.ReLU(), last)
    lexical = torch.nn.EmbeddingBag(max(1, buckets), 1, mode="mean")
    torch.nn.init.zeros_(lexical.weight)
    parameters = [*model.parameters(), *(lexical.parameters() if bags is not None else ())]
    optimiser = torch.optim.AdamW(parameters, lr=0.003, weight_decay=weight_decay)
    positives = float(y.sum())
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor((len(y) - positives) / positives))
    # the rows of each text, so a batch of texts takes all of their segments
    order = torch.argsort(rows.owner, stable=True)
    starts = torch.searchsorted(rows.owner[order], torch.arange(len(y) + 1))
    model.train()
    for _ in range(epochs):
        for texts in torch.randperm(len(y)).split(batch):
            picked = torch.cat([order[starts[t] : starts[t + 1]] for t in texts.tolist()])
            renumber = torch.full((len(y),), -1, dtype=torch.long)
            renumber[texts] = torch.arange(len(texts))
            logits = model(rows.x[picked]).squeeze(1)
            if bags is not None:
                logits = logits + lexical(*bags.take(picked)).squeeze(1)
            owners = renumber[rows.owner[picked]]
            optimiser.zero_grad()
            loss = loss_fn(_text_logits(logits, owners, len(texts)), y[texts])
            loss.backward()
            optimiser.step()
    params = {
        "w1": first.weight.detach(),
        "b1": first.bias.detach(),
        "w2": last.weight.detach()[0],
        "b2": last.bias.detach()[0],
    }
    if bags is not None:
        params["lexical"] = lexical.weight.detach()[:, 0]
    return params


def text_scores(
    params: dict[str, torch.Tensor], rows: Rows, n: int, *, bags: Bags | None = None
) -> torch.Tensor:
    """Raw text logits (before calibration) from trained parameters."""
    import torch

    hidden = torch.relu(rows.x @ params["w1"].T + params["b1"])
    logits = hidden @ params["w2"] + params["b2"]
    if bags is not None:
        ids, offsets = bags.take(torch.arange(len(rows.x)))
        weights = params["lexical"][:, None]
        logits = logits + torch.nn.functional.embedding_bag(ids, weights, offsets)[:, 0]
    return _text_logits(logits, rows.owner, n)


def subset(
    rows: Rows, samples: torch.Tensor, *, max_segments: int, bags: Bags | None = None
) -> tuple[Rows, int, Bags | None]:
    """The rows of the texts flagged in ``samples`` (bool), renumbered, how many texts, and
    their n-gram bags when ``bags`` is given."""
    import torch

    keep = samples[rows.owner] & (rows.rank < max_segments)
    renumber = torch.cumsum(samples.long(), 0) - 1
    picked = Rows(rows.x[keep], renumber[rows.owner[keep]], rows.rank[keep])
    kept = None
    if bags is not None:
        index = torch.nonzero(keep).squeeze(1)
        kept = Bags(bags.flat, bags.starts[index], bags.lens[index])
    return picked, int(samples.sum()), kept
