"""Real questions for the semantic-cache benchmarks: Quora question pairs from
``../shared/data/qqp-gptcache/qqp_dev.json`` (see its SOURCE.md), read in place.

Vectors are computed once per embedder and kept in ``~/.cache/routerx/qqp-embed/`` as ``.npy``
files named by a hash of the embedder id and the texts, so a rerun does not pay MiniLM's ~15 ms
a text again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "qqp-gptcache" / "qqp_dev.json"
_pairs: Optional[List[Dict[str, Any]]] = None


def pairs() -> List[Dict[str, Any]]:
    """The labelled pairs, or a skip naming the missing file."""
    global _pairs
    if _pairs is None:
        if not DATA.is_file():
            pytest.skip(f"QQP pairs not found at {DATA} (the shared data folder beside the repository)")
        _pairs = json.loads(DATA.read_text(encoding="utf-8"))
    return _pairs


def questions() -> List[str]:
    """Distinct question strings in file order (non-empty, at most 1,000 characters)."""
    seen: Dict[str, None] = {}
    for p in pairs():
        for t in (p["text_a"], p["text_b"]):
            t = t.strip()
            if t and len(t) <= 1000:
                seen.setdefault(t, None)
    return list(seen)


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "routerx" / "qqp-embed"


def vectors(embedder: Any, texts: Sequence[str], batch: int = 256) -> Any:
    """``embedder``'s unit vectors of ``texts`` (n × dim float32), from the cache when present."""
    import numpy as np

    h = hashlib.sha256(embedder.model_id.encode())
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    name = embedder.model_id.split("@")[0].lower()
    path = cache_dir() / f"{name}-{h.hexdigest()[:24]}.npy"
    if path.is_file():
        x = np.load(path)
        if x.shape == (len(texts), embedder.dim):
            return x
    x = np.empty((len(texts), embedder.dim), dtype=np.float32)
    for i in range(0, len(texts), batch):
        x[i : i + batch] = embedder.embed(list(texts[i : i + batch]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, x)
    os.replace(tmp, path)
    return x


def percentiles(samples_s: Sequence[float]) -> Tuple[float, float]:
    """(median, p99) in microseconds."""
    s = sorted(samples_s)
    return s[len(s) // 2] * 1e6, s[min(len(s) - 1, int(len(s) * 0.99))] * 1e6
