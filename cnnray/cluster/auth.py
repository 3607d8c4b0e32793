"""Ray token authentication as clients see it: where the token comes from, and how a process presents it.

Ray 2.60 (`ray._private.authentication`): a cluster started with `RAY_AUTH_MODE=token` refuses any
gRPC or HTTP call (job API, dashboard, state API) without `Authorization: Bearer <token>`; HTTP
answers 401 without a token and 403 with a wrong one. A client process presents the token when its
environment says `RAY_AUTH_MODE=token` and the token is in `RAY_AUTH_TOKEN`, the file named by
`RAY_AUTH_TOKEN_PATH`, or `~/.ray/auth_token`. Ray reads that environment once, when it first
needs it: `use_token` must run before Ray is imported.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

MODE_ENV, TOKEN_ENV, TOKEN_PATH_ENV = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_FILE = Path.home() / ".ray" / "auth_token"


def write_new_token(path: Path) -> str:
    """A fresh random token written to path, readable by its owner only."""
    token = secrets.token_hex(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return token


def read_token(path: str | Path) -> str | None:
    """The token in a file (None when there is no such file)."""
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


def token_from_environment() -> str | None:
    """The token this process would present by Ray's own rules (env, env path, ~/.ray/auth_token)."""
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    if os.environ.get(TOKEN_PATH_ENV):
        return read_token(os.environ[TOKEN_PATH_ENV])
    return read_token(DEFAULT_TOKEN_FILE)


def bearer(token: str | None) -> dict[str, str]:
    """HTTP headers that carry the token (none without one)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def use_token(token: str | None) -> None:
    """Make this process (and what it starts) present `token` to Ray; call before importing Ray.

    An explicit `RAY_AUTH_MODE=disabled` is respected: the user asked for no authentication.
    """
    if not token or os.environ.get(MODE_ENV, "").lower() == "disabled":
        return
    os.environ[MODE_ENV] = "token"
    os.environ[TOKEN_ENV] = token
    os.environ.pop(TOKEN_PATH_ENV, None)
