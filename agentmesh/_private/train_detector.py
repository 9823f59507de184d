"""Train the detector's learned layer: ``python -m agentmesh._private.train_detector``.

Reads the *training* split of the corpus only (``injection_data``): the evaluation splits are
never embedded here, so neither the weights nor the operating point can see them. The operating
point is chosen on out-of-fold predictions: the training split is cut into five folds as the
heldout split is cut from it, by the attacker's goal and by benign source (so no goal or source
is in a fold's training and validation part at once), a model trained on four folds scores the
fifth, and the calibration shift puts the score at which
``--target-fpr`` of the benign out-of-fold texts would be flagged at 0.5. The final model is
then trained on the whole training split with the same settings.

Deterministic: fixed seeds, one torch thread, seeded mini-batches; the weights are written
rounded, so a rerun on the same installed packages writes the same file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from agentmesh._private.classifier import (
    CATEGORY_ORDER,
    CUES,
    WEIGHTS_FILE,
    Lexical,
    Weights,
    rules_row,
    segments,
)
from agentmesh._private.embedding import MODEL_PACKAGE, POOLINGS, load_minilm
from agentmesh._private.injection_data import Sample, build_corpus
from agentmesh._private.lexical import Bags, pack
from agentmesh._private.scanner import inspect

if TYPE_CHECKING:
    import torch

    from agentmesh._private.embedding import MiniLM

__all__ = [
    "Rows",
    "main",
    "segment_rows",
    "segment_texts",
    "text_scores",
    "threshold_at_fpr",
    "tpr_at_fpr",
    "train_mlp",
]

_FOLDS = 5


def threshold_at_fpr(benign: list[float], fpr: float) -> float:
    """The lowest threshold (score >= threshold flags) that flags at most ``fpr`` of ``benign``."""
    ranked = sorted(benign, reverse=True)
    allowed = math.floor(fpr * len(ranked) + 1e-9)
    if allowed >= len(ranked):
        return 0.0
    return math.nextafter(ranked[allowed], math.inf)


def tpr_at_fpr(injections: list[float], benign: list[float], fpr: float) -> tuple[float, float]:
    """(true-positive rate, threshold) at the threshold that keeps false positives <= ``fpr``."""
    threshold = threshold_at_fpr(benign, fpr)
    return sum(s >= threshold for s in injections) / len(injections), threshold


class Rows(NamedTuple):
    """Segment feature rows of many texts: ``owner[i]`` is the text that row ``i`` belongs to,
    ``rank[i]`` its place in the cue order (a text keeps its segments of rank < max_segments).
    """

    x: torch.Tensor
    owner: torch.Tensor
    rank: torch.Tensor


def segment_texts(samples: list[Sample], *, segment_chars: int, max_segments: int) -> list[str]:
    """Every segment's text, in the order of :func:`segment_rows`' rows (the lexical channel's
    input)."""
    found: list[str] = []
    for sample in samples:
        text = inspect(sample.text).text
        found.extend(segments(text, max_chars=segment_chars, limit=max_segments) or [""])
    return found


def segment_rows(
    samples: list[Sample],
    *,
    segment_chars: int,
    max_segments: int,
    max_tokens: int,
    pooling: str,
    layers: int | None = None,
    cache: Path | None = None,
) -> Rows:
    """Feature rows (segment embedding + the text's rule evidence) for every kept segment;
    segment embeddings are kept in the file ``cache`` (when given) across runs."""
    import torch

    encoder = load_minilm(max_tokens=max_tokens, pooling=pooling, layers=layers)
    texts: list[str] = []
    owner: list[int] = []
    rank: list[int] = []
    rules: list[list[float]] = []
    for i, sample in enumerate(samples):
        seen = inspect(sample.text)
        found = segments(seen.text, max_chars=segment_chars, limit=max_segments) or [""]
        cues = [len(CUES.findall(t.lower())) for t in found]
        order = sorted(range(len(found)), key=lambda j: (-cues[j], j))
        texts.extend(found)
        owner.extend([i] * len(found))
        rank.extend(order.index(j) for j in range(len(found)))
        rules.extend([rules_row(seen)] * len(found))
    embedded = _embeddings(encoder, texts, cache)
    x = torch.cat([embedded, torch.tensor(rules)], dim=1)
    return Rows(x, torch.tensor(owner), torch.tensor(rank))


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


def _group(sample: Sample) -> str:
    """Folds are cut as the heldout split is: by the attacker's goal, and by benign source."""
    if sample.injection:
        return f"goal:{sample.goal or sample.family}"
    return sample.sources[0]


def _fold(group: str) -> int:
    return int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) % _FOLDS


def _round(values: list[float] | float) -> list[float] | float:
    if isinstance(values, float):
        return float(f"{values:.6g}")
    return [float(f"{v:.6g}") for v in values]


def main(argv: list[str] | None = None) -> int:
    """Train on the training split and write the weights file; print what it measured."""
    import torch

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--segment-chars", type=int, default=200)
    parser.add_argument("--max-segments", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--pooling", choices=POOLINGS, default="mean_max")
    parser.add_argument("--layers", type=int, default=2, help="encoder layers run (0..6)")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--buckets", type=int, default=1 << 16, help="lexical channel's hash buckets (0: none)"
    )
    parser.add_argument("--chars", default="3,4", help="character n-gram lengths of the channel")
    parser.add_argument("--target-fpr", type=float, default=0.01)
    parser.add_argument("--cache", type=Path, help="folder for segment embeddings (speeds reruns)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / WEIGHTS_FILE)
    parser.add_argument("--dry-run", action="store_true", help="measure only, write nothing")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    started = time.perf_counter()
    corpus = build_corpus()
    samples = corpus.split("train")  # the held-out split is never read here
    n = len(samples)
    y = torch.tensor([float(s.injection) for s in samples])
    shape = (args.max_tokens, args.pooling, args.layers)
    cache = None if args.cache is None else args.cache / f"segments-{'-'.join(map(str, shape))}.pt"
    rows = segment_rows(
        samples,
        segment_chars=args.segment_chars,
        max_segments=args.max_segments,
        max_tokens=args.max_tokens,
        pooling=args.pooling,
        layers=args.layers,
        cache=cache,
    )
    chars = tuple(int(c) for c in args.chars.split(",") if c)
    bags = None
    if args.buckets > 0:
        texts = segment_texts(
            samples, segment_chars=args.segment_chars, max_segments=args.max_segments
        )
        assert len(texts) == len(rows.x), "segment texts out of step with the feature rows"
        bags = Bags.of(texts, buckets=args.buckets, chars=chars)
    print(
        f"features: {tuple(rows.x.shape)} in {time.perf_counter() - started:.0f} s", file=sys.stderr
    )

    settings = {
        "hidden": args.hidden,
        "epochs": args.epochs,
        "seed": args.seed,
        "dropout": args.dropout,
        "weight_decay": args.weight_decay,
        "buckets": args.buckets,
    }
    folds = torch.tensor([_fold(_group(s)) for s in samples])
    out_of_fold = torch.zeros(n)
    for k in range(_FOLDS):
        part, m, part_bags = subset(rows, folds != k, max_segments=args.max_segments, bags=bags)
        params = train_mlp(part, y[folds != k], bags=part_bags, **settings)
        held, m, held_bags = subset(rows, folds == k, max_segments=args.max_segments, bags=bags)
        out_of_fold[folds == k] = text_scores(params, held, m, bags=held_bags).detach()
    inj = out_of_fold[y == 1].tolist()
    ben = out_of_fold[y == 0].tolist()
    cut = threshold_at_fpr(ben, args.target_fpr)
    tpr1, _ = tpr_at_fpr(inj, ben, 0.01)
    trig = [float(out_of_fold[i]) for i, s in enumerate(samples) if s.trigger]
    report = {
        "oof_tpr_at_1pct_fpr": round(tpr1, 4),
        "oof_tpr_at_operating_point": round(sum(s >= cut for s in inj) / len(inj), 4),
        "oof_benign_trigger_fpr": round(sum(s >= cut for s in trig) / max(1, len(trig)), 4),
    }
    print(json.dumps(report), file=sys.stderr)
    scored = zip(samples, out_of_fold.tolist(), strict=True)
    missed = Counter(s.style for s, v in scored if s.injection and v < cut)
    print(f"out-of-fold misses at the operating point by style: {dict(missed)}", file=sys.stderr)
    if args.dry_run:
        return 0

    every = torch.ones(n, dtype=torch.bool)
    everything, _, all_bags = subset(rows, every, max_segments=args.max_segments, bags=bags)
    params = train_mlp(everything, y, bags=all_bags, **settings)
    lexical = None
    if bags is not None:
        lexical = Lexical(
            buckets=args.buckets, chars=list(chars), weights=pack(params["lexical"].tolist())
        )
    weights = Weights(
        embedding=MODEL_PACKAGE,
        pooling=args.pooling,
        segment_chars=args.segment_chars,
        max_segments=args.max_segments,
        max_tokens=args.max_tokens,
        layers=args.layers,
        categories=list(CATEGORY_ORDER),
        w1=[_round(row) for row in params["w1"].tolist()],  # type: ignore[misc]
        b1=_round(params["b1"].tolist()),  # type: ignore[arg-type]
        w2=_round(params["w2"].tolist()),  # type: ignore[arg-type]
        b2=_round(float(params["b2"])),  # type: ignore[arg-type]
        lexical=lexical,
        shift=_round(-cut),  # type: ignore[arg-type]
        threshold_note=f"0.5 = {args.target_fpr:.2%} false positives on out-of-fold training "
        "benign texts",
        training={
            "corpus_digest": corpus.digest,
            "samples": n,
            "injections": int(y.sum()),
            **settings,
            **report,
        },
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(weights.model_dump_json() + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
