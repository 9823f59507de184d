"""Converted torch weights, cached by the GGUF's digest so only the first start converts.

transformers loads a GGUF by dequantising every tensor into torch (and by rebuilding the
tokenizer from the GGUF's vocabulary), which took minutes for the 270M Gemma on two busy
cores. Its ``save_pretrained`` output (safetensors plus the tokenizer files) loads in seconds,
so the first start saves it under ``<cache_dir>/<sha256 of the GGUF>-<dtype>`` and later
starts load that folder. The key is the file's content, not its path: a replaced file with
the same name converts again, and the same file under two names converts once.

The folder is written under a temporary name and renamed into place, so a process that dies
mid-save or two actors converting at once never leave a half-written entry behind; an entry
that fails to load is removed and converted again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["LoadedModel", "convert_gguf", "gguf_digest", "load_or_convert"]

_BLOCK = 1 << 20


def gguf_digest(path: str) -> str:
    """SHA-256 of the file's bytes (about a second for a 250 MB file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class LoadedModel:
    """A loaded model with where it came from: ``from_cache`` is False when it was converted."""

    model: Any
    tokenizer: Any
    cache_path: str
    from_cache: bool
    load_s: float


def convert_gguf(path: str, dtype: Any) -> tuple[Any, Any]:
    """Dequantise a GGUF into a plain dense transformers model and tokenizer (the slow path).

    transformers 5 loads a GGUF through a quantizer that keeps the blocks packed when the
    ``kernels`` package can fetch a matmul kernel (from the Hub, which these machines cannot
    reach) and dequantises otherwise; ``dequantize=True`` asks for the dense model always.
    The quantizer stays attached even then, and ``save_pretrained`` refuses any model with a
    GGUF quantizer ("not serializable"), so it is detached: the weights are plain tensors.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, name = os.path.split(path)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model: Any = AutoModelForCausalLM.from_pretrained(
        folder,
        gguf_file=name,
        dtype=dtype,
        quantization_config=GgufConfig(gguf_file=name, dequantize=True),
    )
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def _load_saved(folder: str, dtype: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    return model, tokenizer


def load_or_convert(path: str, *, cache_dir: str, dtype: Any, dtype_name: str) -> LoadedModel:
    """The model of ``path`` in ``dtype``: from the cache when an entry exists, else converted
    (and the conversion saved for next time)."""
    start = time.perf_counter()
    target = os.path.join(cache_dir, f"{gguf_digest(path)}-{dtype_name}")
    if os.path.isdir(target):
        try:
            model, tokenizer = _load_saved(target, dtype)
        except Exception:
            shutil.rmtree(target, ignore_errors=True)  # unusable entry: convert again below
        else:
            return LoadedModel(model, tokenizer, target, True, time.perf_counter() - start)
    model, tokenizer = convert_gguf(path, dtype)
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{target}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.rename(tmp, target)
    except OSError:
        # Another process won the race (target exists now) or the disk is full: the model
        # is loaded either way; only the cache entry is skipped.
        shutil.rmtree(tmp, ignore_errors=True)
    return LoadedModel(model, tokenizer, target, False, time.perf_counter() - start)
