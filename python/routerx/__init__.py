"""routerx: route every LLM request to the cheapest model and hardware tier that meets it,
answer repeats from cache, and account for every token and dollar.

    >>> import routerx
    >>> router = routerx.Router()
    >>> d = router.route("Translate into French: good morning")
    >>> d.model, d.tier, d.category
"""

from ._core import Decision, __version__
from .config import Config, load_config
from .errors import (
    ConfigError,
    InvalidConstraintError,
    InvalidRequestError,
    NoRouteError,
    RouterxError,
    UnknownModelError,
)
from .policy import CATEGORIES, Catalog, Model, PolicySettings, Tier
from .router import Recorded, Router

__all__ = [
    "__version__",
    "Router",
    "Decision",
    "Recorded",
    "Config",
    "load_config",
    "Catalog",
    "Model",
    "Tier",
    "PolicySettings",
    "CATEGORIES",
    "RouterxError",
    "InvalidRequestError",
    "InvalidConstraintError",
    "UnknownModelError",
    "NoRouteError",
    "ConfigError",
]
