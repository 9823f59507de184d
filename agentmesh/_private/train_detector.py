"""Train the detector's learned layer: ``python -m agentmesh._private.train_detector``.

Reads the *training* split of the corpus only (``injection_data``): the evaluation splits are
never embedded here, so neither the weights nor the operating point can see them. The training
split is cut into five folds as the heldout split is cut from it, by the attacker's goal and by
benign source (so no goal or source is in a fold's training and validation part at once), and
every template family is in every fold, as in heldout.

Two recipes. By default (``--adapter-rank 8``) the encoder is fine-tuned (``finetune.py``):
adapters, MLP and lexical channel are trained on four folds, and the fifth
(``--calibration-fold``) scores the model that ships. With ``--adapter-rank 0`` the encoder
stays frozen: an MLP over cached embeddings, each fold scored by a model trained on the other
four, then the final model trained on the whole split. Either way the calibration shift puts
the score at which ``--target-fpr`` of the measured benign texts would be flagged at 0.5.

Deterministic for a given ``--threads``: fixed seeds, deterministic torch algorithms, seeded
mini-batches; the weights are written rounded, so a rerun on the same installed packages
writes the same file.
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
from typing import TYPE_CHECKING, NamedTuple, TypedDict, cast

from agentmesh._private import classifier
from agentmesh._private.classifier import (
    CATEGORY_ORDER,
    CUES,
    WEIGHTS_FILE,
    Adapter,
    Lexical,
    Weights,
    rules_row,
    segments,
)
from agentmesh._private.detector_mlp import segment_rows, subset, text_scores, train_mlp
from agentmesh._private.embedding import MODEL_PACKAGE, POOLINGS, load_minilm
from agentmesh._private.injection_data import Sample, build_corpus
from agentmesh._private.lexical import Bags, pack
from agentmesh._private.scanner import inspect

if TYPE_CHECKING:
    import torch


__all__ = [
    "SegmentTable",
    "main",
    "segment_table",
    "threshold_at_fpr",
    "tpr_at_fpr",
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


class SegmentTable(NamedTuple):
    """Every kept segment of many texts: its text, owning text, rank in the cue order, and the
    owning text's rule evidence (``rules_row``)."""

    texts: list[str]
    owner: list[int]
    rank: list[int]
    rules: list[list[float]]


def segment_table(samples: list[Sample], *, segment_chars: int, max_segments: int) -> SegmentTable:
    """The segments the encoder reads of each sample (as ``classifier.segments_of`` picks them)."""
    table = SegmentTable([], [], [], [])
    for i, sample in enumerate(samples):
        seen = inspect(sample.text)
        found = segments(seen.text, max_chars=segment_chars, limit=max_segments) or [""]
        cues = [len(CUES.findall(t.lower())) for t in found]
        order = sorted(range(len(found)), key=lambda j: (-cues[j], j))
        table.texts.extend(found)
        table.owner.extend([i] * len(found))
        table.rank.extend(order.index(j) for j in range(len(found)))
        table.rules.extend([rules_row(seen)] * len(found))
    return table


def _group(sample: Sample) -> str:
    """Folds are cut as the heldout split is: by the attacker's goal, and by benign source. An
    injection without a goal (some exfiltration families) is a fold's alone: heldout holds the
    training families, so a fold should not lose a whole family either."""
    if sample.injection:
        return f"goal:{sample.goal}" if sample.goal else f"text:{sample.text}"
    return sample.sources[0]


def _fold(group: str) -> int:
    return int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) % _FOLDS


def _round(values: list[float] | float) -> list[float] | float:
    if isinstance(values, float):
        return float(f"{values:.6g}")
    return [float(f"{v:.6g}") for v in values]


def _arguments(argv: list[str] | None) -> argparse.Namespace:
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
    parser.add_argument(
        "--adapter-rank",
        type=int,
        default=8,
        help="fine-tune the encoder with adapters of this rank (finetune.py); 0: frozen encoder",
    )
    parser.add_argument("--adapter-epochs", type=int, default=3)
    parser.add_argument(
        "--calibration-fold", type=int, default=0, help="with adapters: the fold that calibrates"
    )
    parser.add_argument("--threads", type=int, default=1, help="the same file for the same count")
    parser.add_argument("--target-fpr", type=float, default=0.01)
    parser.add_argument("--cache", type=Path, help="folder for segment embeddings (speeds reruns)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / WEIGHTS_FILE)
    parser.add_argument("--dry-run", action="store_true", help="measure only, write nothing")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink the corpus (checks)")
    parser.add_argument(
        "--recalibrate",
        action="store_true",
        help="re-pick the operating point of the fine-tuned weights in --out, no training",
    )
    return parser.parse_args(argv)


class _Trained(NamedTuple):
    params: dict[str, torch.Tensor]
    adapter: Adapter | None
    scores: torch.Tensor | None  # out-of-fold raw scores of the texts in ``measured``
    measured: torch.Tensor  # bool per text


def _frozen(
    args: argparse.Namespace, samples: list[Sample], table: SegmentTable, bags: Bags | None
) -> _Trained:
    """The MLP over the frozen encoder's embeddings: five-fold out-of-fold scores, then the
    final model on the whole training split."""
    import torch

    n, y, folds = len(samples), _labels(samples), _folds(samples)
    shape = (args.max_tokens, args.pooling, args.layers)
    cache = None if args.cache is None else args.cache / f"segments-{'-'.join(map(str, shape))}.pt"
    rows = segment_rows(
        table, max_tokens=args.max_tokens, pooling=args.pooling, layers=args.layers, cache=cache
    )
    settings = _settings(args)
    out_of_fold = torch.zeros(n)
    for k in range(_FOLDS):
        part, m, part_bags = subset(rows, folds != k, max_segments=args.max_segments, bags=bags)
        params = train_mlp(part, y[folds != k], bags=part_bags, **settings)
        held, m, held_bags = subset(rows, folds == k, max_segments=args.max_segments, bags=bags)
        out_of_fold[folds == k] = text_scores(params, held, m, bags=held_bags).detach()
    every = torch.ones(n, dtype=torch.bool)
    everything, _, all_bags = subset(rows, every, max_segments=args.max_segments, bags=bags)
    params = train_mlp(everything, y, bags=all_bags, **settings)
    return _Trained(params, None, out_of_fold, every)


def _adapted(
    args: argparse.Namespace, samples: list[Sample], table: SegmentTable, bags: Bags | None
) -> _Trained:
    """Adapters, MLP and lexical channel trained together on four folds; the fifth
    (``--calibration-fold``: other goals, other sources) is left for ``main`` to score the
    model that ships with. One fold, not five, and no refit on everything: a fine-tuning run
    takes a quarter of an hour on two cores."""
    import torch
    from safetensors.torch import load_file

    from agentmesh._private.embedding import model_dir
    from agentmesh._private.finetune import Segments, train_adapted

    y, folds = _labels(samples), _folds(samples)
    if bags is None:
        raise SystemExit("--adapter-rank needs the lexical channel (--buckets > 0)")
    encoder = load_minilm(max_tokens=args.max_tokens, pooling=args.pooling, layers=args.layers)
    data = Segments(
        ids=[encoder.tokenize(t) for t in table.texts],
        owner=torch.tensor(table.owner),
        rules=torch.tensor(table.rules),
        bags=bags,
    )
    weights = load_file(str(model_dir() / "model.safetensors"))
    measured = folds == args.calibration_fold
    model = train_adapted(
        data,
        torch.nonzero(~measured).squeeze(1),
        y,
        encoder=weights,
        layers=args.layers,
        rank=args.adapter_rank,
        **{**_settings(args), "epochs": args.adapter_epochs},
    )
    a, b = model.adapters()
    adapter = Adapter(
        rank=args.adapter_rank,
        a={k: pack(v.flatten().tolist()) for k, v in a.items()},
        b={k: pack(v.flatten().tolist()) for k, v in b.items()},
    )
    return _Trained(model.head(), adapter, None, measured)


def _labels(samples: list[Sample]) -> torch.Tensor:
    import torch

    return torch.tensor([float(s.injection) for s in samples])


def _folds(samples: list[Sample]) -> torch.Tensor:
    import torch

    return torch.tensor([_fold(_group(s)) for s in samples])


class _Settings(TypedDict):
    hidden: int
    epochs: int
    seed: int
    dropout: float
    weight_decay: float
    buckets: int


def _settings(args: argparse.Namespace) -> _Settings:
    return {
        "hidden": args.hidden,
        "epochs": args.epochs,
        "seed": args.seed,
        "dropout": args.dropout,
        "weight_decay": args.weight_decay,
        "buckets": args.buckets,
    }


def _weights(args: argparse.Namespace, trained: _Trained, chars: tuple[int, ...]) -> Weights:
    """The weights file's model, not yet calibrated (shift 0, no training record)."""
    params = trained.params
    lexical = None
    if "lexical" in params:
        lexical = Lexical(
            buckets=args.buckets, chars=list(chars), weights=pack(params["lexical"].tolist())
        )
    return Weights(
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
        adapter=trained.adapter,
        shift=0.0,
        threshold_note="",
        training={},
    )


def _inference_scores(
    weights: Weights, samples: list[Sample], measured: torch.Tensor
) -> torch.Tensor:
    """Raw scores of the ``measured`` texts as the detector computes them (encoder in its
    fastest precision here, adapters merged and float16-rounded): the operating point is
    picked on what will run, not on the float32 training model."""
    import torch

    layer = classifier.of(weights)
    out = torch.zeros(len(samples))
    for i in torch.nonzero(measured).squeeze(1).tolist():
        out[i] = layer.raw(inspect(samples[i].text))
    return out


def _measure(
    args: argparse.Namespace, samples: list[Sample], scores: torch.Tensor, measured: torch.Tensor
) -> tuple[float, dict[str, float | int]]:
    """The cut that flags ``--target-fpr`` of the measured benign texts, and what it catches."""
    picked = [s for s, m in zip(samples, measured.tolist(), strict=True) if m]
    scored = scores[measured].tolist()
    inj = [v for s, v in zip(picked, scored, strict=True) if s.injection]
    ben = [v for s, v in zip(picked, scored, strict=True) if not s.injection]
    trig = [v for s, v in zip(picked, scored, strict=True) if s.trigger]
    cut = threshold_at_fpr(ben, args.target_fpr)
    report = {
        "oof_tpr_at_1pct_fpr": round(tpr_at_fpr(inj, ben, 0.01)[0], 4),
        "oof_tpr_at_operating_point": round(sum(v >= cut for v in inj) / len(inj), 4),
        "oof_benign_trigger_fpr": round(sum(v >= cut for v in trig) / max(1, len(trig)), 4),
        "oof_texts": len(picked),
    }
    print(json.dumps(report), file=sys.stderr)
    pairs = zip(picked, scored, strict=True)
    missed = Counter(s.style for s, v in pairs if s.injection and v < cut)
    print(f"out-of-fold misses at the operating point by style: {dict(missed)}", file=sys.stderr)
    return cut, report


def main(argv: list[str] | None = None) -> int:
    """Train on the training split and write the weights file; print what it measured.
    ``--recalibrate``: re-pick the operating point of the fine-tuned weights in ``--out``."""
    import torch

    args = _arguments(argv)
    threads, strict = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    try:
        return _run(args)
    finally:  # a caller's process (a test) keeps its own settings
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(strict)


def _run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    corpus = build_corpus(scale=args.scale)
    samples = corpus.split("train")  # the held-out split is never read here
    y = _labels(samples)
    measured = _folds(samples) == args.calibration_fold
    if args.recalibrate:
        weights = Weights.model_validate_json(args.out.read_text(encoding="utf-8"))
        if weights.adapter is None:
            raise SystemExit("--recalibrate needs fine-tuned weights; retrain frozen ones")
        if weights.training.get("corpus_digest") != corpus.digest:
            raise SystemExit(f"{args.out} was trained on another corpus: retrain")
        training = dict(weights.training)
        scores = _inference_scores(weights, samples, measured)
    else:
        table = segment_table(
            samples, segment_chars=args.segment_chars, max_segments=args.max_segments
        )
        chars = tuple(int(c) for c in args.chars.split(",") if c)
        bags = None
        if args.buckets > 0:
            bags = Bags.of(table.texts, buckets=args.buckets, chars=chars)
        took = time.perf_counter() - started
        print(f"{len(table.texts)} segments in {took:.0f} s", file=sys.stderr)
        trained = (_adapted if args.adapter_rank > 0 else _frozen)(args, samples, table, bags)
        weights = _weights(args, trained, chars)
        training = {
            "corpus_digest": corpus.digest,
            "samples": len(samples),
            "injections": int(y.sum()),
            **cast("dict[str, int | float]", _settings(args)),
            "adapter_rank": args.adapter_rank,
            "adapter_epochs": args.adapter_epochs if args.adapter_rank else 0,
        }
        if trained.scores is None:  # fine-tuned: calibrated on the detector's own scores
            scores = _inference_scores(weights, samples, measured)
        else:
            scores, measured = trained.scores, trained.measured
    cut, report = _measure(args, samples, scores, measured)
    if args.dry_run:
        return 0
    folds = f"fold {args.calibration_fold}" if weights.adapter else "all folds"
    weights = weights.model_copy(
        update={
            "shift": _round(-cut),
            "threshold_note": f"0.5 = {args.target_fpr:.2%} false positives on out-of-fold "
            f"training benign texts ({folds})",
            "training": {**training, **report},
        }
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(weights.model_dump_json() + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
