"""Where a model reference points: a local directory, the Hugging Face cache, or the hub.

``trmbounds measure --roll REF`` takes a local directory or a hub id. Without care, a
typo in a path or a machine without network costs half a minute of
``huggingface_hub`` retries and a screen of warnings before an error. Here:

- a reference that exists on disk is loaded from there, never from the network;
- a reference that looks like a path (``./x``, ``/x``, ``~/x``, ``a/b/c``, ``C:\\x``, or
  anything that is not a valid hub id) and does not exist fails at once;
- a directory whose ``config.json`` or ``tokenizer_config.json`` has an ``auto_map``
  (it names Python modules of its own for transformers to import) is refused before
  transformers reads it: trmbounds never runs code from a model directory, and every
  ``from_pretrained`` is called with ``trust_remote_code=False`` (so transformers never
  asks on stdin whether to run it either);
- a hub id is loaded from the local cache only (``local_files_only``) when
  ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set, or when the hub's endpoint
  does not answer a single short request; if the cache does not hold it, the error
  says so in one line.

transformers is imported by the caller; this module imports only the standard
library (and ``huggingface_hub`` for its endpoint, inside a function).
"""

from __future__ import annotations

import json
import os
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import InputFileError, TrmboundsError

__all__ = [
    "Location",
    "locate",
    "load_pretrained",
    "looks_local",
    "hub_unreachable_reason",
    "refuse_remote_code",
]

#: The files of a model directory through which transformers finds custom code.
CODE_CONFIGS = ("config.json", "tokenizer_config.json")

#: A config larger than this is not read for ``auto_map`` (transformers will refuse it).
_CONFIG_BYTES = 64 * 2**20

# huggingface_hub's repo-id rule: one or two segments of [A-Za-z0-9_.-], at most 96
# characters each, no "--" or "..", not starting or ending with "-" or "."
_HUB_ID = re.compile(r"^(?:[\w.-]{1,96}/)?[\w.-]{1,96}$", re.ASCII)

#: Seconds the one request to the hub may take before it counts as unreachable.
PROBE_TIMEOUT = 5.0

_TRUE = {"1", "on", "yes", "true"}


def looks_local(ref: str) -> bool:
    """Whether ``ref`` can only be a filesystem path (not a hub id)."""
    if ref.startswith(("/", "./", "../", "~", "\\", ".\\", "..\\")) or ref in (".", ".."):
        return True
    if re.match(r"^[A-Za-z]:[\\/]", ref) or "\\" in ref or ref.endswith("/"):
        return True
    if not _HUB_ID.fullmatch(ref) or "--" in ref or ".." in ref:
        return True
    return any(seg.startswith(("-", ".")) or seg.endswith(("-", ".")) for seg in ref.split("/"))


def _offline_env() -> str | None:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return var
    return None


def _endpoint() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.ENDPOINT).rstrip("/")
    except Exception:  # noqa: BLE001 - any failure: the documented default
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


@lru_cache(maxsize=4)
def _probe(endpoint: str, timeout: float) -> str | None:
    """``None`` when ``endpoint`` answers one HEAD request (any HTTP status), else why not.

    The request runs in a daemon thread so that a name lookup that hangs (a resolver
    that does not answer; urllib's timeout does not cover it) is cut off too.
    """
    result: list[str | None] = []
    worker = threading.Thread(
        target=lambda: result.append(_request(endpoint, timeout)), daemon=True
    )
    worker.start()
    worker.join(timeout + 1.0)
    if not result:
        return f"no answer within {timeout:g} s"
    return result[0]


def _request(endpoint: str, timeout: float) -> str | None:
    req = urllib.request.Request(endpoint + "/api/models?limit=1", method="HEAD")
    try:
        with urllib.request.urlopen(req, timeout=timeout):  # noqa: S310 - http(s) endpoint
            return None
    except urllib.error.HTTPError:
        return None  # the server answered
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        text = " ".join(str(reason).split()) or type(exc).__name__
        return text


def hub_unreachable_reason(timeout: float = PROBE_TIMEOUT) -> str | None:
    """``None`` when the Hugging Face hub can be used, else a short reason it cannot."""
    var = _offline_env()
    if var:
        return f"{var} is set"
    endpoint = _endpoint()
    why = _probe(endpoint, timeout)
    return None if why is None else f"the hub at {endpoint} is unreachable: {why}"


@dataclass(frozen=True)
class Location:
    """Where to load a reference from: ``target`` for ``from_pretrained``, and whether
    only local files may be used (``offline_reason`` says why, for a hub id)."""

    target: str
    local_dir: bool
    local_files_only: bool
    offline_reason: str | None = None


def locate(ref: str | os.PathLike, what: str = "model") -> Location:
    """Resolve ``ref``; raise :class:`InputFileError` for a path that does not exist."""
    text = str(ref)
    path = Path(text).expanduser()
    if path.exists():
        if path.is_dir():
            refuse_remote_code(path, text, what)
        return Location(str(path), True, True)
    if looks_local(text):
        raise InputFileError(f"{what} path not found: {text}")
    why = hub_unreachable_reason()
    if why is not None and what == "model" and not _cached(text, "config.json"):
        raise InputFileError(_not_cached(text, what, why))
    return Location(text, False, why is not None, why)


def refuse_remote_code(directory: Path, ref: str, what: str = "model") -> None:
    """Raise :class:`InputFileError` when ``directory`` names code of its own: an
    ``auto_map`` in its ``config.json`` or ``tokenizer_config.json``."""
    for name in CODE_CONFIGS:
        f = directory / name
        try:
            if not f.is_file() or f.stat().st_size > _CONFIG_BYTES:
                continue
            cfg = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            continue  # unreadable: transformers' own error names it
        if isinstance(cfg, dict) and "auto_map" in cfg:
            raise InputFileError(
                f"{what} {ref}: {name} has an 'auto_map' naming Python code in the model "
                "directory; trmbounds never runs code from a model directory "
                "(trust_remote_code=False): use a model of an architecture transformers knows"
            )


def _cached(repo_id: str, filename: str) -> bool:
    """Whether the Hugging Face cache holds ``filename`` of ``repo_id`` (True if unsure)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        return True
    try:
        return isinstance(try_to_load_from_cache(repo_id, filename), str)
    except Exception:  # noqa: BLE001 - an unexpected cache layout: let the loader decide
        return True


def _not_cached(ref: str, what: str, why: str) -> str:
    return (
        f"cannot load {what} {ref!r}: not a local directory and not in the Hugging Face "
        f"cache ({why}); give a local directory, or try `trmbounds measure --demo`"
    )


def hf_cache_dir() -> str:
    """The Hugging Face hub cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else
    ``$XDG_CACHE_HOME/huggingface/hub`` or ``~/.cache/huggingface/hub``), as
    huggingface_hub resolves it, without importing it."""
    env = os.environ
    if env.get("HF_HUB_CACHE"):
        return os.path.expanduser(env["HF_HUB_CACHE"])
    home = env.get("HF_HOME") or os.path.join(
        env.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface"
    )
    return os.path.join(os.path.expanduser(home), "hub")


def load_pretrained(
    load: Callable[[str, bool], Any], ref: str | os.PathLike, what: str = "model"
) -> Any:
    """``load(target, local_files_only)`` for ``ref``, every failure one line.

    ``load`` calls a transformers ``from_pretrained``; its errors become
    :class:`InputFileError` naming ``ref``.
    """
    loc = locate(ref, what)
    try:
        return load(loc.target, loc.local_files_only)
    except TrmboundsError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt file raises anything (SafetensorError)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if loc.offline_reason is not None:
            if what == "model":  # locate() found its config in the cache: something else lacks
                raise InputFileError(
                    f"cannot load {what} {str(ref)!r} from the Hugging Face cache "
                    f"({loc.offline_reason}): {first}"
                ) from None
            raise InputFileError(_not_cached(str(ref), what, loc.offline_reason)) from None
        raise InputFileError(f"cannot load {what} {str(ref)!r}: {first}") from None
