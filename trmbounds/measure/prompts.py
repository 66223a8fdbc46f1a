"""Prompts: the built-in set, prompt files (text or JSONL), and their tokenization."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InputFileError, TrmboundsError

#: A small built-in prompt set (used when no prompt file is given).
BUILTIN_PROMPTS = (
    "Explain why the sky is blue in two sentences.",
    "Write a short poem about the sea.",
    "What is 17 times 23? Show your reasoning.",
    "Summarise the plot of Romeo and Juliet.",
    "Give three tips for writing clear Python code.",
    "Translate 'good morning, how are you?' into French.",
    "Describe how a hash table works.",
    "List the planets of the solar system in order.",
)


def load_prompts(path: str | os.PathLike | None) -> list[Any]:
    """Prompts from a text file (one per non-empty line) or a JSONL file.

    A JSONL record is an object with ``"prompt"`` (or ``"text"``), a string, or
    ``"messages"``, a chat (list of ``{"role", "content"}``) for the tokenizer's chat
    template. ``None`` gives :data:`BUILTIN_PROMPTS`.
    """
    if path is None:
        return list(BUILTIN_PROMPTS)
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"prompt file not found: {p}")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputFileError(f"{p}: not UTF-8 text") from None
    except OSError as exc:
        raise InputFileError(f"cannot read {p}: {exc.strerror or exc}") from None
    jsonl = p.suffix.lower() in (".jsonl", ".json", ".ndjson")
    out: list[Any] = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if not jsonl:
            out.append(line.rstrip("\n"))
            continue
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError) as exc:  # also: nested too deep, > 4,300 digits
            from .._io import decode_reason

            raise InputFileError(f"{p}: line {lineno}: {decode_reason(exc)}") from None
        if isinstance(rec, str):
            out.append(rec)
        elif isinstance(rec, dict) and isinstance(rec.get("prompt", rec.get("text")), str):
            out.append(rec.get("prompt", rec.get("text")))
        elif isinstance(rec, dict) and _is_chat(rec.get("messages")):
            out.append(list(rec["messages"]))
        else:
            raise InputFileError(
                f"{p}: line {lineno}: expected an object with a 'prompt' string or a "
                "'messages' list of {role, content}"
            )
    if not out:
        raise InputFileError(f"{p}: no prompts")
    return out


def _is_chat(x: Any) -> bool:
    return (
        isinstance(x, list)
        and len(x) > 0
        and all(isinstance(m, dict) and "role" in m and "content" in m for m in x)
    )


def _tokenize(tokenizer: Any, prompts: Sequence[Any]) -> list[list[int]]:
    out = []
    for i, pr in enumerate(prompts):
        if isinstance(pr, str):
            ids = tokenizer(pr)["input_ids"]
        elif _is_chat(pr):
            if getattr(tokenizer, "chat_template", None) is None:
                raise TrmboundsError(
                    f"prompt {i + 1} is a chat ('messages') but the tokenizer has no chat template"
                )
            ids = tokenizer.apply_chat_template(pr, add_generation_prompt=True, tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
        else:
            ids = list(pr)
        ids = [int(t) for t in ids]
        if not ids:
            raise TrmboundsError(f"prompt {i + 1} is empty after tokenization")
        out.append(ids)
    return out
