"""Greedy torch requests generated together: one left-padded ``generate`` call for many.

The prompts are padded on the left (so every row's next token is at the same column) with
an attention mask that hides the padding; the padding is done here, whatever the tokenizer's
``padding_side``, with its pad token (its end-of-sequence token when it has none). The
batch generates up to the largest ``max_tokens`` among its rows; a stopping criterion of our
own ends each row on its own terms (its ``max_tokens``, its stop strings, the
end-of-sequence token), transformers then pads the finished rows, and the whole call ends
when the last row does. Each row's answer is cut exactly as :meth:`TorchBackend.generate`
cuts a lone request's, with its own token counts and finish reason.

In float32 on the CPU the padded rows gave the same tokens as the requests generated alone,
every time it was checked (batches of 2 to 8 rows, up to 32 tokens, tests/test_torch_batch.py).
In half precision on a GPU the sums may run in another order for another batch shape, so a
row whose top two tokens are nearly tied could take the other one there (not checked: these
machines have no GPU).

Only greedy plain requests batch (:func:`can_batch`): a sampled request draws from the global
torch generator seeded per request, which deterministic replay relies on and a shared batch
would break, and a schema or tools request may be asked again with its errors.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, StopStringCriteria

from agentmesh.inference import GenerateRequest, GenerateResponse

if TYPE_CHECKING:
    from agentmesh._private.torch_backend import TorchBackend

__all__ = ["can_batch", "generate_batch"]


def can_batch(request: GenerateRequest) -> bool:
    """Whether ``request`` may share a batch: greedy, no JSON schema, no tools."""
    return request.temperature == 0 and request.json_schema is None and not request.tools


class _RowStops(StoppingCriteria):
    """Ends each row at its own ``max_tokens``, stop strings or end-of-sequence token, and
    records the number of new tokens it had then (``ends``)."""

    def __init__(
        self, requests: list[GenerateRequest], start: int, eos: set[int], tokenizer: Any
    ) -> None:
        self._start = start
        self._limits = [r.max_tokens for r in requests]
        self._eos = eos
        self.ends: list[int | None] = [None] * len(requests)
        # One transformers criterion per distinct set of stop strings, applied to its rows:
        # the same matching as a lone request's ``stop_strings``.
        groups: dict[tuple[str, ...], list[int]] = {}
        for row, request in enumerate(requests):
            if request.stop:
                groups.setdefault(tuple(request.stop), []).append(row)
        self._stops = [
            (StopStringCriteria(tokenizer=tokenizer, stop_strings=list(stop)), rows)
            for stop, rows in groups.items()
        ]

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        new = input_ids.shape[1] - self._start
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for criterion, rows in self._stops:
            done[rows] |= criterion(input_ids, scores)[rows]
        last = input_ids[:, -1].tolist()
        for row, limit in enumerate(self._limits):
            if self.ends[row] is None and (done[row] or new >= limit or last[row] in self._eos):
                self.ends[row] = new
        return torch.tensor([end is not None for end in self.ends], device=input_ids.device)


def generate_batch(
    backend: TorchBackend, requests: list[GenerateRequest]
) -> list[GenerateResponse]:
    """Generate greedy plain requests as one ``model.generate`` call (see the module)."""
    from agentmesh._private.torch_backend import finished

    start = time.perf_counter()
    tokenizer = backend._tokenizer
    rows = [backend._input_ids(r, r.prompt)[0].tolist() for r in requests]
    width = max(len(ids) for ids in rows)
    eos_ids = backend._model.generation_config.eos_token_id
    eos = set(eos_ids if isinstance(eos_ids, list) else [eos_ids]) - {None}
    eos.add(tokenizer.eos_token_id)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, prompt in enumerate(rows):  # padded on the left
        ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    stops = _RowStops(requests, width, eos, tokenizer)
    with torch.inference_mode():
        out = backend._model.generate(
            input_ids=ids.to(backend.device),
            attention_mask=mask.to(backend.device),
            max_new_tokens=max(r.max_tokens for r in requests),
            do_sample=False,
            temperature=None,
            top_k=None,
            top_p=None,
            pad_token_id=pad,
            stopping_criteria=StoppingCriteriaList([stops]),
        )
    elapsed = time.perf_counter() - start
    responses = []
    for row, request in enumerate(requests):
        generated = out[row, width:]
        new = generated[: stops.ends[row] or len(generated)].tolist()
        text = tokenizer.decode(new, skip_special_tokens=True)
        cut, finish = finished(text, new, request, tokenizer.eos_token_id)
        responses.append(
            GenerateResponse(
                text=cut,
                model=backend._model_name,
                backend=backend.name,
                prompt_tokens=len(rows[row]),
                completion_tokens=len(new),
                duration_s=elapsed,
                finish_reason=finish,
            )
        )
    return responses
