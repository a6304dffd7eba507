"""API keys: bearer tokens with a role, stored only as SHA-256 hashes in a YAML file.

Keys are 256-bit random tokens, so a plain SHA-256 is enough (no password stretching needed: there
is nothing to guess); the file can be a Kubernetes Secret. It is re-read when it changes, so keys
are added, rotated and revoked without restarting the service.

Roles: `operator` may do everything; `village` may register and read only the workers of its own
desa in its own kecamatan. A village key must name both: desa names repeat across kecamatan (and
regencies), so a key naming only its desa would see every desa of that name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml

from lindung_runtime.logging import get_logger

log = get_logger(__name__)

Role = Literal["operator", "village"]
ROLES: tuple[Role, ...] = ("operator", "village")
KEY_PREFIX = "lnd_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def place(name: str | None) -> str:
    """Desa/kecamatan names compared as people write them: case and spacing do not matter."""
    return " ".join((name or "").split()).casefold()


@dataclass(frozen=True)
class ApiKey:
    name: str
    role: Role
    sha256: str
    village: str | None = None
    district: str | None = None
    created_at: str = ""

    def covers(self, village: str | None, district: str | None) -> bool:
        """May this key see or register a worker of this desa/kecamatan?"""
        if self.role == "operator":
            return True
        if not self.village or not self.district:  # never loaded or created (read_keys)
            return False
        return place(village) == place(self.village) and place(district) == place(self.district)

    def as_yaml(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": self.name, "role": self.role, "sha256": self.sha256}
        if self.village:
            entry["village"] = self.village
        if self.district:
            entry["district"] = self.district
        entry["created_at"] = self.created_at
        return entry


class KeyStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: dict[str, ApiKey] = {}
        self._stamp: tuple[int, int, int] | None = None

    def keys(self) -> list[ApiKey]:
        self._reload_if_changed()
        return list(self._keys.values())

    def find(self, presented: str) -> ApiKey | None:
        self._reload_if_changed()
        wanted = hash_key(presented)
        for digest, key in self._keys.items():
            if secrets.compare_digest(digest, wanted):
                return key
        return None

    def by_hash(self, sha256: str) -> ApiKey | None:
        """The key a staff session was opened with, while it is still in the file: revoking
        the key ends its sessions too."""
        self._reload_if_changed()
        return self._keys.get(sha256)

    def _reload_if_changed(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._keys, self._stamp = {}, None
            return
        # The inode too: keys are written by replacing the file, and a rotation may keep its size
        # and (on coarse-grained file systems) its mtime.
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        try:
            self._keys = {key.sha256: key for key in read_keys(self.path)}
            self._stamp = stamp
            log.info("api_keys_loaded", count=len(self._keys), path=str(self.path))
        except (OSError, ValueError, yaml.YAMLError) as error:
            # Keep the keys we had: a half-written or broken file must not lock everyone out.
            log.error("api_keys_unreadable", path=str(self.path), error=repr(error)[:300])


def read_keys(path: Path) -> list[ApiKey]:
    if not path.exists():
        return []
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    keys = []
    for entry in data.get("keys") or []:
        role = entry.get("role")
        if role not in ROLES:
            raise ValueError(f"key {entry.get('name')!r}: unknown role {role!r}")
        if role == "village" and not str(entry.get("village") or "").strip():
            raise ValueError(f"key {entry.get('name')!r}: a village key needs its village")
        if role == "village" and not str(entry.get("district") or "").strip():
            raise ValueError(
                f"key {entry.get('name')!r}: a village key needs its kecamatan (district): "
                "desa names repeat across kecamatan. Re-create it with `lindung apikey create "
                "NAME --role village --village DESA --district KECAMATAN`"
            )
        keys.append(
            ApiKey(
                name=str(entry["name"]),
                role=role,
                sha256=str(entry["sha256"]).lower(),
                village=entry.get("village"),
                district=entry.get("district"),
                created_at=str(entry.get("created_at") or ""),
            )
        )
    return keys


def write_keys(path: Path, keys: list[ApiKey]) -> None:
    """Replace the file atomically (the service may be reading it), readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({"keys": [k.as_yaml() for k in keys]}, sort_keys=False)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".api-keys.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def create_key(
    path: Path,
    name: str,
    role: Role,
    village: str | None = None,
    district: str | None = None,
) -> str:
    """Add a key and return it: the only time it is ever shown (only its hash is kept)."""
    if role == "village" and not (village and village.strip()):
        raise ValueError("a village key needs --village")
    if role == "village" and not (district and district.strip()):
        raise ValueError("a village key needs --district (its kecamatan)")
    keys = [k for k in read_keys(path) if k.name != name]
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    keys.append(
        ApiKey(
            name=name,
            role=role,
            sha256=hash_key(key),
            village=village.strip() if village else None,
            district=district.strip() if district else None,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
    )
    write_keys(path, keys)
    return key


def revoke_key(path: Path, name: str) -> bool:
    keys = read_keys(path)
    kept = [k for k in keys if k.name != name]
    if len(kept) == len(keys):
        return False
    write_keys(path, kept)
    return True
