"""The exceptions routerx raises, under one base.

Each also subclasses the standard exception a caller would already catch for that kind of
problem (``ValueError`` for bad input, ``LookupError`` for unknown names), so existing
``except ValueError`` code keeps working.
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "RouterxError",
    "InvalidRequestError",
    "InvalidConstraintError",
    "UnknownModelError",
    "NoRouteError",
    "ConfigError",
    "ModelNotFoundError",
    "BudgetExceededError",
    "SnapshotError",
]


class RouterxError(Exception):
    """Base of every routerx error."""


class InvalidRequestError(RouterxError, ValueError):
    """The request is malformed; ``field`` names the offending part (e.g. ``messages[2].role``)."""

    def __init__(self, message: str, field: Optional[str] = None) -> None:
        super().__init__(message, field)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


class InvalidConstraintError(InvalidRequestError):
    """A routing constraint is out of range: NaN or negative budget, quality outside [0, 1]."""


class UnknownModelError(InvalidConstraintError, LookupError):
    """A model named by the caller is not in the catalog."""


class NoRouteError(RouterxError, RuntimeError):
    """Strict mode: no (model, tier) meets every constraint."""


class ConfigError(RouterxError, ValueError):
    """A config, catalog or classifier file is invalid. ``file``, ``line`` and ``field`` locate it."""

    def __init__(self, message: str, file: Optional[str] = None, line: Optional[int] = None, field: Optional[str] = None) -> None:
        super().__init__(message, file, line, field)
        self.message = message
        self.file = file
        self.line = line
        self.field = field

    def __str__(self) -> str:
        return self.message


class ModelNotFoundError(ConfigError):
    """A model's files (e.g. the sentence embedder's) are not installed or not where they were looked for."""


class BudgetExceededError(RouterxError, RuntimeError):
    """A budget whose action is ``reject`` has no room for the request (gRPC: RESOURCE_EXHAUSTED).

    ``scope`` names the limit's scope, e.g. ``tenant:acme``; the message names the limit.
    """

    def __init__(self, message: str, scope: Optional[str] = None) -> None:
        super().__init__(message, scope)
        self.message = message
        self.scope = scope

    def __str__(self) -> str:
        return self.message


class SnapshotError(RouterxError, OSError):
    """A cache snapshot could not be written, or is missing, truncated, corrupt or of another format
    version. ``file`` names it; the cache is left as it was."""

    def __init__(self, message: str, file: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.file = file

    def __str__(self) -> str:
        return self.message


class MissingDependencyError(RouterxError, ImportError):
    """An optional package a command needs (e.g. PyTorch, to train a cross-encoder) is not
    installed; the message names the command that installs it."""

    def __init__(self, message: str, package: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.package = package

    def __str__(self) -> str:
        return self.message
