"""torch backend: a GGUF model dequantised into transformers, on a GPU when there is one.

torch and transformers are imported lazily (the ``torch`` extra). The weights come from the
same GGUF file the llama.cpp backend runs; :mod:`agentmesh._private.torch_cache` converts them
once and caches the result. Requests run as chat (the tokenizer's template) or as plain
completion, see :class:`~agentmesh.TorchModel`.

torch has no grammar sampler, so a JSON schema or a tool list cannot constrain the tokens as on
llama.cpp. Instead the schema (or the tool protocol of :mod:`tool_protocol`) is put in the
prompt, the first JSON value of the answer is taken and validated against the schema, and a
failing answer is asked again with the errors, up to the spec's ``json_attempts``; the last
answer is returned either way, and the structured-output loop above validates it again.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

from agentmesh._private.tool_protocol import parse_tools_answer, tools_preamble, tools_schema
from agentmesh._private.torch_cache import load_or_convert
from agentmesh.errors import ModelError
from agentmesh.inference import (
    GenerateChunk,
    GenerateRequest,
    GenerateResponse,
    ModelBackend,
    ToolCall,
    TorchModel,
)

__all__ = ["TorchBackend", "finished", "first_json"]


def first_json(text: str) -> str | None:
    """The first JSON object or array in ``text`` (models often wrap it in prose or fences)."""
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                _, end = decoder.raw_decode(text, i)
            except ValueError:
                continue
            return text[i:end]
    return None


def _schema_errors(text: str, schema: dict[str, Any]) -> list[str]:
    import jsonschema

    found = first_json(text)
    if found is None:
        return ["the answer holds no JSON object or array"]
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in validator.iter_errors(json.loads(found))
    ][:10]


class TorchBackend(ModelBackend):
    """A loaded transformers model. The model service calls it from one thread at a time:
    a request alone (:meth:`generate`) or several greedy ones as one batch
    (:meth:`generate_batch`, see :mod:`agentmesh._private.torch_batch`).
    """

    def __init__(self, spec: TorchModel, n_threads: int) -> None:
        try:
            import torch
        except ImportError as exc:
            raise ModelError(
                "torch and transformers are not installed; install the `torch` extra: "
                "pip install 'agentmesh[torch]'"
            ) from exc
        self._torch = torch
        self._spec = spec
        # Answers a schema or tools request may take (the spec's; a backend may lower it).
        self.json_attempts = spec.json_attempts
        torch.set_num_threads(n_threads)
        gpu = spec.device != "cpu" and torch.cuda.is_available()
        if spec.device == "cuda" and not gpu:
            raise ModelError('TorchModel(device="cuda"): torch sees no CUDA device here')
        self.device = "cuda:0" if gpu else "cpu"
        dtype_name = spec.dtype if spec.dtype != "auto" else ("bfloat16" if gpu else "float32")
        assert spec.path is not None  # resolved by TorchModel.build
        try:
            loaded = load_or_convert(
                spec.path,
                cache_dir=spec.resolve_cache_dir(),
                dtype=getattr(torch, dtype_name),
                dtype_name=dtype_name,
            )
        except Exception as exc:
            raise ModelError(f"transformers could not load {spec.path!r}: {exc}") from exc
        self.loaded_from_cache = loaded.from_cache
        self.cache_path = loaded.cache_path
        self.load_s = loaded.load_s
        self._tokenizer = loaded.tokenizer
        self._model = loaded.model.to(self.device).eval()
        self._chat = spec.prompt_format == "chat" and bool(self._tokenizer.chat_template)
        self._model_name = spec.path.rsplit("/", 1)[-1]

    @property
    def name(self) -> str:
        return "torch"

    def _input_ids(self, request: GenerateRequest, prompt: str) -> Any:
        if self._chat:
            messages = [{"role": "user", "content": prompt}]
            if request.system:
                messages.insert(0, {"role": "system", "content": request.system})
            ids = self._tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
            )["input_ids"]
        else:
            text = f"{request.system}\n\n{prompt}" if request.system else prompt
            ids = self._tokenizer(text, return_tensors="pt")["input_ids"]
        return ids.to(self.device)

    def _generate_kwargs(self, request: GenerateRequest, ids: Any) -> dict[str, Any]:
        seed = self._spec.seed if request.seed is None else request.seed
        self._torch.manual_seed(seed)  # one request at a time: the global generator is ours
        kwargs: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": self._torch.ones_like(ids),
            "max_new_tokens": request.max_tokens,
            "do_sample": request.temperature > 0,
            "pad_token_id": self._tokenizer.pad_token_id or self._tokenizer.eos_token_id,
        }
        if request.temperature > 0:
            kwargs.update(temperature=request.temperature, top_k=None, top_p=None)
        else:
            kwargs.update(temperature=None, top_k=None, top_p=None)
        if request.stop:
            kwargs.update(stop_strings=list(request.stop), tokenizer=self._tokenizer)
        return kwargs

    def _run(self, request: GenerateRequest, prompt: str) -> tuple[str, str, int, int]:
        """One generation: text (cut at a stop string), finish reason, token counts."""
        ids = self._input_ids(request, prompt)
        with self._torch.inference_mode():
            out = self._model.generate(**self._generate_kwargs(request, ids))
        new = out[0][ids.shape[1] :].tolist()
        text = self._tokenizer.decode(new, skip_special_tokens=True)
        cut, finish = finished(text, new, request, self._tokenizer.eos_token_id)
        return cut, finish, int(ids.shape[1]), len(new)

    def generate(self, request: GenerateRequest) -> GenerateResponse:
        """Generate; with a schema or tools, validate the JSON and ask again on errors."""
        start = time.perf_counter()
        schema = tools_schema(request) if request.tools else request.json_schema
        prompt = request.prompt
        if request.tools:
            prompt = tools_preamble(request) + prompt
        elif schema is not None:
            prompt = (
                f"Reply with one JSON value matching this JSON schema: {json.dumps(schema)}\n\n"
                + prompt
            )
        tries = self.json_attempts if schema is not None else 1
        asked, prompt_tokens, completion_tokens = prompt, 0, 0
        for _ in range(tries):
            text, finish, n_in, n_out = self._run(request, asked)
            prompt_tokens, completion_tokens = prompt_tokens + n_in, completion_tokens + n_out
            if schema is None:
                break
            errors = _schema_errors(text, schema)
            if not errors:
                finish = "stop"  # the JSON is complete; what followed it is dropped
                break
            asked = (
                f"{prompt}\n{text}\n\nThat answer is not valid JSON for the schema: "
                + "; ".join(errors)
                + "\nReply again with only the corrected JSON.\n"
            )
        tool_calls: list[ToolCall] = []
        if schema is not None:
            text = first_json(text) or text
        if request.tools:
            text, tool_calls = parse_tools_answer(text, json_answer=request.json_schema)
            finish = "tool_calls" if tool_calls else finish
        return GenerateResponse(
            text=text,
            tool_calls=tool_calls,
            model=self._model_name,
            backend=self.name,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            duration_s=time.perf_counter() - start,
            finish_reason=finish,
        )

    def can_batch(self, request: GenerateRequest) -> bool:
        """Whether ``request`` may share a batch: greedy, no JSON schema, no tools."""
        from agentmesh._private.torch_batch import can_batch

        return can_batch(request)

    def generate_batch(self, requests: list[GenerateRequest]) -> list[GenerateResponse]:
        """Answer several requests, in order: those that :meth:`can_batch` as one
        left-padded ``generate`` call (each answer as the request would get alone), any
        other one alone."""
        from agentmesh._private.torch_batch import can_batch, generate_batch

        together = [r for r in requests if can_batch(r)]
        answers = iter(generate_batch(self, together) if len(together) > 1 else [])
        return [
            next(answers) if can_batch(r) and len(together) > 1 else self.generate(r)
            for r in requests
        ]

    def generate_stream(self, request: GenerateRequest) -> Iterator[GenerateChunk]:
        """Yield text as the model generates it, then the response.

        A request with a schema or tools is validated as a whole (and may be asked again), so
        it streams as one piece. Text that might begin a stop string is held back until it
        cannot, so no piece ever shows a stop string.
        """
        if request.tools or request.json_schema is not None:
            response = self.generate(request)
            yield GenerateChunk(text=response.text)
            yield GenerateChunk(response=response)
            return
        from transformers import TextIteratorStreamer

        start = time.perf_counter()
        ids = self._input_ids(request, request.prompt)
        streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = self._generate_kwargs(request, ids)
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                with self._torch.inference_mode():
                    result["out"] = self._model.generate(**kwargs, streamer=streamer)
            except Exception as exc:  # re-raised in the caller's thread below
                result["error"] = exc
                streamer.end()

        thread = threading.Thread(target=run, name="torch-generate", daemon=True)
        thread.start()
        text, sent, stopped = "", 0, False
        hold = max((len(s) for s in request.stop), default=1) - 1
        for piece in streamer:
            text += piece
            cut, stop = _cut_at_stop(text, request.stop)
            if stop is not None:
                text, stopped = cut, True
            ready = len(text) if stopped else max(sent, len(text) - hold)
            if ready > sent:
                yield GenerateChunk(text=text[sent:ready])
                sent = ready
            if stopped:
                break
        if stopped:  # the rest, until generation stops by itself at the stop string
            for _ in streamer:
                pass
        thread.join()
        if "error" in result:
            raise ModelError(f"torch generation failed: {result['error']}")
        if len(text) > sent:
            yield GenerateChunk(text=text[sent:])
        new = result["out"][0][ids.shape[1] :].tolist()
        _, finish = finished("", new, request, self._tokenizer.eos_token_id)
        response = GenerateResponse(
            text=text,
            model=self._model_name,
            backend=self.name,
            prompt_tokens=int(ids.shape[1]),
            completion_tokens=len(new),
            duration_s=time.perf_counter() - start,
            finish_reason="stop" if stopped else finish,
        )
        yield GenerateChunk(response=response)


def finished(
    text: str, new: list[int], request: GenerateRequest, eos: int | None
) -> tuple[str, str]:
    """``text`` cut at the first stop string, and the finish reason: "stop" (a stop string
    or the end-of-sequence token ended it), else "length" when ``new`` filled max_tokens."""
    cut, finish = _cut_at_stop(text, request.stop)
    if finish is not None:
        return cut, finish
    ended = len(new) > 0 and new[-1] == eos
    return cut, "length" if len(new) >= request.max_tokens and not ended else "stop"


def _cut_at_stop(text: str, stop: list[str]) -> tuple[str, str | None]:
    """``text`` up to the first stop string, and ``"stop"`` when one was found."""
    hits = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(hits)], "stop") if hits else (text, None)
