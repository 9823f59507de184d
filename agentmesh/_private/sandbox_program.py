"""What a sandboxed program needs bound read-only to run: its install, its script, its files.

Kept apart from the command line (:mod:`agentmesh._private.sandbox_argv`) because finding these
paths is its own problem: following the program's symlinks to its install (a venv, the Python
prefix it points at, the source folders an editable install maps), and picking the script and
the other existing paths out of its arguments.
"""

from __future__ import annotations

import ast
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

__all__ = ["SYSTEM_LINKS", "SYSTEM_PREFIXES", "covered", "resolve_program"]

#: Bound whole; /bin, /lib*, /sbin are links into it.
SYSTEM_PREFIXES: Final = ("/usr",)
SYSTEM_LINKS: Final = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


def covered(path: str, roots: Iterable[str]) -> bool:
    """Whether ``path`` is one of ``roots`` or lies under one."""
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _install_root(executable: str) -> str:
    """``/x/venv/bin/python`` -> ``/x/venv``; a program outside a ``bin`` folder -> its folder."""
    folder = os.path.dirname(executable)
    if os.path.basename(folder) in ("bin", "sbin") and os.path.dirname(folder) != "/":
        return os.path.dirname(folder)
    return folder if folder != "/" else executable


def _link_chain(path: str) -> list[str]:
    """``path`` and every path its symlinks lead through, absolute and normalised."""
    chain = [os.path.normpath(path)]
    current = chain[0]
    for _ in range(40):
        if not os.path.islink(current):
            break
        target = os.readlink(current)
        current = os.path.normpath(os.path.join(os.path.dirname(current), target))
        chain.append(current)
    return chain


def _editable_sources(venv: str) -> list[str]:
    """Source folders an editable install maps into ``venv`` (setuptools finder, .pth paths)."""
    found: list[str] = []
    for site in Path(venv).glob("lib/python*/site-packages"):
        for finder in site.glob("__editable__*finder*.py"):
            try:
                tree = ast.parse(finder.read_text(encoding="utf-8"))
            except (OSError, SyntaxError, UnicodeDecodeError):
                continue
            for node in tree.body:
                if (
                    isinstance(node, ast.AnnAssign | ast.Assign)
                    and node.value is not None
                    and any(
                        isinstance(t, ast.Name) and t.id in ("MAPPING", "NAMESPACES")
                        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                    )
                ):
                    try:
                        value = ast.literal_eval(node.value)
                    except ValueError:
                        continue
                    for item in value.values() if isinstance(value, dict) else []:
                        found.extend([item] if isinstance(item, str) else list(item))
        for pth in site.glob("*.pth"):
            try:
                lines = pth.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError):
                continue
            found.extend(line.strip() for line in lines if line.startswith("/"))
    return [p for p in found if os.path.isabs(p) and os.path.exists(p)]


def resolve_program(command: Sequence[str], workdir: str) -> tuple[str, list[str]]:
    """The program's absolute path and what it needs bound read-only to run."""
    program = command[0]
    if "/" not in program:  # as exec would: on PATH; left bare (to fail inside) if not found
        found = shutil.which(program)
        program = os.path.abspath(found) if found else program
    else:
        program = os.path.normpath(os.path.join(workdir, program))
    needed: list[str] = []
    for step in _link_chain(program) if os.path.exists(program) else []:
        root = _install_root(step)
        if covered(step, (*SYSTEM_PREFIXES, *SYSTEM_LINKS)):
            continue
        needed.append(root)
        if os.path.isfile(os.path.join(root, "pyvenv.cfg")):
            needed.extend(_editable_sources(root))
    script_seen = False
    for arg in command[1:]:
        if not arg or (arg.startswith("-") and "=" not in arg):
            continue
        candidate = arg.split("=", 1)[1] if arg.startswith("-") else arg
        path = os.path.normpath(os.path.join(workdir, candidate))
        if not os.path.exists(path) or path == "/" or (candidate != arg and "/" not in candidate):
            continue
        if os.path.isfile(path) and not script_seen:
            script_seen = True  # the script: Python puts its folder on sys.path
            needed.append(os.path.dirname(path))
        else:
            needed.append(path)
    return program, needed
