"""Authentication (bearer tokens) and the authorization seam.

Upstream: kube-apiserver's static token file (`--token-auth-file`, CSV `token,user,uid,"group1,group2"`)
and the authorizer interface (`Authorize(attributes) -> allow|deny|no opinion`). Tokens live in
DATA_DIR/pki/tokens.csv, readable by the owner only. Everyone authenticated is allowed for now;
`Authorizer` is where RBAC goes (e.g. cross-namespace clone needs read on the source).
"""

from __future__ import annotations

import csv
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

ANONYMOUS_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version", "/version/"})


@dataclass(frozen=True)
class User:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Attributes:
    user: User
    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""


class Authorizer:
    def authorize(self, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason). Every authenticated user may do everything, as system:masters."""
        return True, ""


@dataclass
class TokenFile:
    path: Path
    tokens: dict[str, User] = field(default_factory=dict)

    @classmethod
    def load_or_create(cls, path: Path) -> TokenFile:
        tf = cls(path)
        if path.exists():
            with path.open(newline="") as f:
                for row in csv.reader(f):
                    if len(row) >= 2 and row[0]:
                        groups = tuple(g for g in (row[3].split(",") if len(row) > 3 else []) if g)
                        tf.tokens[row[0]] = User(row[1], row[2] if len(row) > 2 else "", groups)
        if not any(u.name == "admin" for u in tf.tokens.values()):
            tf.add(secrets.token_hex(32), User("admin", "admin", ("system:masters",)))
        return tf

    def add(self, token: str, user: User) -> None:
        self.tokens[token] = user
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", newline="") as f:
            w = csv.writer(f)
            for t, u in self.tokens.items():
                w.writerow([t, u.name, u.uid, ",".join(u.groups)])
        os.replace(tmp, self.path)

    def token_for(self, name: str) -> str:
        for t, u in self.tokens.items():
            if u.name == name:
                return t
        raise KeyError(name)

    def authenticate(self, header: str | None) -> User | None:
        if not header or not header.startswith("Bearer "):
            return None
        presented = header[len("Bearer "):].strip()
        for token, user in self.tokens.items():
            if hmac.compare_digest(token, presented):
                return user
        return None
