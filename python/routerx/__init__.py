"""routerx: route every LLM request to the cheapest model and hardware tier that meets it,
answer repeats from cache, and account for every token and dollar.

    >>> import routerx
    >>> router = routerx.Router()
    >>> d = router.route("Translate into French: good morning")
    >>> d.model, d.tier, d.category
"""

from typing import TYPE_CHECKING, Any

from ._core import Decision, __version__
from .config import Budget, Config, load_config
from .errors import (
    BudgetExceededError,
    ConfigError,
    InvalidConstraintError,
    InvalidRequestError,
    MissingDependencyError,
    ModelNotFoundError,
    NoRouteError,
    RouterxError,
    SnapshotError,
    UnknownModelError,
)
from .policy import CATEGORIES, Catalog, Model, PolicySettings, Tier
from .router import CachedAnswer, Recorded, Router

if TYPE_CHECKING:
    from .client import Client, RemoteDecision, RemoteError, UnknownDecisionError

_CLIENT_NAMES = ("Client", "RemoteDecision", "RemoteError", "UnknownDecisionError")


def __getattr__(name: str) -> Any:
    # The gRPC client pulls in grpcio and protobuf (~150 ms): load it on first use only.
    if name in _CLIENT_NAMES:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'routerx' has no attribute {name!r}")


__all__ = [
    "__version__",
    "Client",
    "RemoteDecision",
    "RemoteError",
    "UnknownDecisionError",
    "Router",
    "Decision",
    "Recorded",
    "CachedAnswer",
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
    "MissingDependencyError",
    "NoRouteError",
    "ConfigError",
    "BudgetExceededError",
    "ModelNotFoundError",
    "SnapshotError",
    "Budget",
]
