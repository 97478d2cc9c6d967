"""The learned router: per-request quality prediction for every catalog model.

    routerx train --data routerbench --out router-quality.json     # or CSV/JSONL outcome files
    routerx eval  --data routerbench --folds 5 --out-dir eval/     # cost–quality curve and metrics

and in the config::

    [quality]
    model = "router-quality.json"
    willingness_to_pay = 0.01      # USD per unit quality: the one knob along the cost–quality curve

The artefact is evaluated in the Rust core on the route path (``routerx._core.QualityModel``);
this package trains it, evaluates it and loads it.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any, Optional, Union

from .. import _core
from ..errors import ConfigError

__all__ = ["load_quality_model", "quality_embedder", "BUILTIN", "builtin_path"]

#: The artefact shipped with routerx: trained on RouteLLM's MMLU outcomes (Apache-2.0).
BUILTIN = "builtin-routellm-mmlu.json"


def builtin_path() -> Path:
    return Path(str(resources.files("routerx.quality").joinpath(BUILTIN)))


def load_quality_model(path: Union[str, "os.PathLike[str]", None]) -> _core.QualityModel:
    """Reads an artefact; "builtin" (or None) for the shipped one. Raises ConfigError naming the
    file when it is missing, not UTF-8, malformed, or of another format version."""
    p = builtin_path() if path in (None, "builtin") else Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read quality model: {e}", file=str(p)) from None
    return _core.QualityModel.from_json(text, str(p))


def quality_embedder(model: _core.QualityModel, loaded: Optional[Any] = None) -> Any:
    """The embedder an artefact was trained with (its inner core object); ``loaded`` (e.g. the
    semantic cache's) is used when it is that embedder, instead of loading another copy."""
    from ..embed import load_minilm, load_static

    if loaded is not None and loaded.model_id == model.embedder_id:
        return loaded._inner
    if model.embedder == "static":
        emb = load_static()
    elif model.embedder == "minilm":
        emb = load_minilm()
    else:
        raise ConfigError(f"quality model needs embedder {model.embedder!r}, which routerx does not have (static, minilm)", field="quality.model")
    return emb._inner
