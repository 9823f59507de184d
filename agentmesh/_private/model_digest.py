"""The digest that names a model's weights in the cache and in recorded calls.

A GGUF model's digest is the SHA-256 of its file (about a second for the bundled model,
computed once per process and file version: path, size and modification time); a model
without a weights file here (a scripted one; a model server's, whose weights are its own) is
named by the SHA-256 of its spec.
"""

from __future__ import annotations

import functools
import hashlib
import os

from agentmesh.inference import LlamaCppModel, ModelSpec, TorchModel

__all__ = ["weights_digest"]


def weights_digest(spec: ModelSpec) -> str:
    """``sha256:<hex>`` of the model's weights (or spec); ModelNotFoundError without them."""
    spec.check()
    if isinstance(spec, LlamaCppModel | TorchModel):  # the same GGUF file either way
        path = os.path.realpath(spec.resolve_path())
        stat = os.stat(path)
        return _file_digest(path, stat.st_size, stat.st_mtime_ns)
    return "sha256:" + hashlib.sha256(spec.model_dump_json().encode()).hexdigest()


@functools.cache
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    del size, mtime_ns  # the cache key: a rewritten file is hashed again
    with open(path, "rb") as weights:
        return "sha256:" + hashlib.file_digest(weights, "sha256").hexdigest()
