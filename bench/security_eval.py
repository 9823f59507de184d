"""The prompt-injection detector on the held-out split: detection rates and CPU latency.

Trains nothing: loads the shipped classifier weights and scores every held-out text of the
project's corpus (``agentmesh/_private/injection_data.py``: held-out template families, goals,
carrier wrappers and benign sources that training never saw) with the full detector, then with
the rules alone for comparison. Reports the true-positive rate at 1% false positives (the
threshold read off the held-out benign scores, as an ROC point is), the rates at the shipped
default thresholds (0.5), the false-positive rate on benign texts holding trigger words
("ignore", "instructions", "system", "password", ...), and p50/p99 latency per text (one text
at a time, one CPU thread: a security actor shares its node with the agents). Prints whether
each goal is met; the last line is a JSON object.

Goals: TPR >= 99% at 1% FPR; <= 2% false positives on benign trigger-word texts; p99 < 20 ms.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import defaultdict

import torch

from agentmesh._private import classifier
from agentmesh._private.detector import Detection, detect
from agentmesh._private.injection_data import Sample, build_corpus
from agentmesh._private.train_detector import tpr_at_fpr
from agentmesh.security import ScanPolicy

THREADS = 1
GOALS = {"tpr_at_1pct_fpr": 0.99, "benign_trigger_fpr": 0.02, "p99_ms": 20.0}


def _run(samples: list[Sample], scanning: ScanPolicy) -> tuple[list[Detection], list[float]]:
    found, took = [], []
    for s in samples:
        started = time.perf_counter()
        found.append(detect(s.text, provenance="tool_result", scanning=scanning))
        took.append((time.perf_counter() - started) * 1000)
    return found, took


def _figures(samples: list[Sample], found: list[Detection], took: list[float]) -> dict[str, float]:
    inj = [d.score for s, d in zip(samples, found, strict=True) if s.injection]
    ben = [d.score for s, d in zip(samples, found, strict=True) if not s.injection]
    tpr, threshold = tpr_at_fpr(inj, ben, 0.01)
    flagged = [d.flagged for d in found]
    pairs = list(zip(samples, flagged, strict=True))
    ranked = sorted(took)
    return {
        "tpr_at_1pct_fpr": round(tpr, 4),
        "threshold_at_1pct_fpr": round(threshold, 4),
        "tpr_at_default": round(sum(f for s, f in pairs if s.injection) / len(inj), 4),
        "fpr_at_default": round(sum(f for s, f in pairs if not s.injection) / len(ben), 4),
        "benign_trigger_fpr": round(
            sum(f for s, f in pairs if s.trigger) / max(1, sum(s.trigger for s in samples)), 4
        ),
        "p50_ms": round(statistics.median(took), 2),
        "p99_ms": round(ranked[min(len(ranked) - 1, int(0.99 * len(ranked)))], 2),
    }


def _breakdown(samples: list[Sample], found: list[Detection]) -> None:
    """Missed injections at the default thresholds, by style and by obfuscation."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s, d in zip(samples, found, strict=True):
        if s.injection:
            for key in (f"style {s.style}", f"obfuscation {s.obfuscation}"):
                counts[key][0] += not d.flagged
                counts[key][1] += 1
    for key, (missed, total) in sorted(counts.items()):
        print(f"  {key:26s} missed {missed:4d} / {total}")


def main() -> int:
    torch.set_num_threads(THREADS)
    corpus = build_corpus()
    held = corpus.split("heldout")  # evaluation only: never trained or tuned on
    started = time.perf_counter()
    layer = classifier.load()
    load_s = time.perf_counter() - started
    if isinstance(layer, classifier.Unavailable):
        print(f"classifier unavailable ({layer.reason}); only the rules are measured")
    full_policy, rules_policy = ScanPolicy(classifier=True), ScanPolicy(classifier=False)
    detect(held[0].text, scanning=full_policy)  # warm-up (first-call allocations)
    found, took = _run(held, full_policy)
    rules_found, rules_took = _run(held, rules_policy)
    full, rules = _figures(held, found, took), _figures(held, rules_found, rules_took)
    n_inj = sum(s.injection for s in held)
    print(
        f"security_eval: corpus {corpus.digest}, held-out split: {n_inj} injections, "
        f"{len(held) - n_inj} benign ({sum(s.trigger for s in held)} with trigger words)"
    )
    print(f"classifier load {load_s:.1f} s; latency on {THREADS} CPU thread, one text at a time")
    for name, figures in (("detector", full), ("rules only", rules)):
        print(f"{name:11s} " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    print("missed by the detector at its default thresholds:")
    _breakdown(held, found)
    verdicts = {
        "tpr_at_1pct_fpr": full["tpr_at_1pct_fpr"] >= GOALS["tpr_at_1pct_fpr"],
        "benign_trigger_fpr": full["benign_trigger_fpr"] <= GOALS["benign_trigger_fpr"],
        "p99_ms": full["p99_ms"] < GOALS["p99_ms"],
    }
    for key, met in verdicts.items():
        print(f"goal {key} {GOALS[key]}: {'met' if met else 'MISSED'} ({full[key]})")
    result = {
        "bench": "security_eval",
        **full,
        "n_injection": n_inj,
        "n_benign": len(held) - n_inj,
        "n_benign_trigger": sum(s.trigger for s in held),
        **{f"rules_{k}": v for k, v in rules.items()},
        "classifier": "unavailable" if isinstance(layer, classifier.Unavailable) else "on",
        "threads": THREADS,
        "corpus_digest": corpus.digest,
        "goals_met": all(verdicts.values()),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
