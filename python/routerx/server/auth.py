"""API keys and tenants: the ``[server]`` section of the config.

.. code-block:: toml

    [[server.api_keys]]
    key_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # sha256 of the key
    tenant = "acme"
    name = "acme-prod"        # optional; what the log shows instead of the key

    [[server.api_keys]]
    key_sha256 = "..."
    admin = true               # may name any tenant, see every tenant's stats, reload the config

Store only the SHA-256 of a key (``printf %s "$KEY" | sha256sum``); ``key = "..."`` (the key
itself) is accepted for tests and local setups. When any key is configured, every routerx call
needs ``authorization: Bearer <key>``; health checking and reflection stay open.

A presented key is hashed and its digest compared with every configured digest using
``hmac.compare_digest``, all of them, whatever matches: the time taken says nothing about which
key, or how much of one, was right. Keys are never logged; the log names a key by ``name``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Tuple

from ..errors import ConfigError

AUTHORIZATION_KEY = "authorization"
_KEY_FIELDS = {"key", "key_sha256", "tenant", "admin", "name"}
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
#: Keys shorter than this are refused: a guessable key protects nothing.
MIN_KEY_LENGTH = 16


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant its key belongs to, and whether it is an admin key."""

    name: str
    tenant: Optional[str]
    admin: bool


@dataclass(frozen=True)
class _Key:
    digest: bytes
    principal: Principal


@dataclass(frozen=True)
class ServerSettings:
    """The validated ``[server]`` section."""

    api_keys: Tuple[_Key, ...] = ()

    @property
    def auth_required(self) -> bool:
        return bool(self.api_keys)

    def authenticate(self, authorization: Optional[str]) -> Optional[Principal]:
        """The principal of an ``authorization`` metadata value, or None if it has no valid key."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        digest = hashlib.sha256(token.strip().encode("utf-8", "surrogateescape")).digest()
        found: Optional[Principal] = None
        for k in self.api_keys:  # no early exit: constant time in which key matched
            if hmac.compare_digest(digest, k.digest):
                found = k.principal
        return found


def server_settings(table: Optional[Mapping[str, Any]], source: str = "<config>") -> ServerSettings:
    """Validates a raw ``[server]`` table (``Config.server``). Raises ConfigError naming the field."""
    if not table:
        return ServerSettings()

    def fail(fld: str, msg: str) -> ConfigError:
        return ConfigError(f"{source}: {fld}: {msg}", file=source, field=fld)

    unknown = set(table) - {"api_keys"}
    if unknown:
        raise fail(f"server.{sorted(unknown)[0]}", "unknown key (expected api_keys)")
    raw = table.get("api_keys", [])
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)) or not all(isinstance(k, Mapping) for k in raw):
        raise fail("server.api_keys", "must be an array of [[server.api_keys]] tables")
    keys = []
    seen = set()
    for i, k in enumerate(raw):
        where = f"server.api_keys[{i}]"
        bad = set(k) - _KEY_FIELDS
        if bad:
            raise fail(f"{where}.{sorted(bad)[0]}", f"unknown key (expected {sorted(_KEY_FIELDS)})")
        if ("key" in k) == ("key_sha256" in k):
            raise fail(where, "give exactly one of key_sha256 (preferred) and key")
        if "key_sha256" in k:
            h = k["key_sha256"]
            if not isinstance(h, str) or not _HEX64.fullmatch(h):
                raise fail(f"{where}.key_sha256", "must be 64 hex digits (the SHA-256 of the key)")
            digest = bytes.fromhex(h)
        else:
            key = k["key"]
            if not isinstance(key, str) or len(key) < MIN_KEY_LENGTH or not key.isprintable() or key != key.strip() or " " in key:
                # The message never repeats the key.
                raise fail(f"{where}.key", f"must be a printable string of at least {MIN_KEY_LENGTH} characters without spaces")
            digest = hashlib.sha256(key.encode("utf-8")).digest()
        admin = k.get("admin", False)
        if not isinstance(admin, bool):
            raise fail(f"{where}.admin", "must be true or false")
        tenant = k.get("tenant")
        if tenant is not None and (not isinstance(tenant, str) or not tenant):
            raise fail(f"{where}.tenant", "must be a non-empty string")
        if tenant is None and not admin:
            raise fail(f"{where}.tenant", "is missing (every non-admin key belongs to one tenant)")
        name = k.get("name", f"key{i}")
        if not isinstance(name, str) or not name or not name.isprintable():
            raise fail(f"{where}.name", "must be a non-empty printable string")
        if digest in seen:
            raise fail(where, "the same key is configured twice")
        seen.add(digest)
        keys.append(_Key(digest, Principal(name, tenant, admin)))
    return ServerSettings(tuple(keys))


__all__ = ["AUTHORIZATION_KEY", "Principal", "ServerSettings", "server_settings"]
