"""The policy layer: the catalog and the rules that turn it into routing decisions."""

from .catalog import CATEGORIES, Catalog, Model, Tier
from .policy import PolicySettings, compile_policy

__all__ = ["CATEGORIES", "Catalog", "Model", "Tier", "PolicySettings", "compile_policy"]
