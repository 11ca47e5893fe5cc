"""Owner tokens: who may control an upload or a task (read-only sharing for everyone else).

An upload or a submission answers with an ``owner_token``: a random secret (256 bits, URL-safe
text) that the client keeps (the web app in its browser session, an API client wherever it
likes). The stores keep only its SHA-256 (`token_hash`), never the token. Processing an upload,
and cancelling, rerunning or correcting a task, take the token (`require_owner`); reading a
status, a result or a download takes none, so a link can be shared without giving control.

Tokens are per client: a client may send the token it already has with an upload or a
submission, and the new upload or task is then owned by that same token, so one token covers
everything a client makes. A request may present several tokens (each of a client's uploads
might have its own): a resource is controlled when any of them owns it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable

from beatsync.contract import OWNER_TOKEN_PATTERN
from beatsync.errors import BeatSyncError

TOKEN_BYTES = 32
_TOKEN = re.compile(OWNER_TOKEN_PATTERN.removeprefix("^").removesuffix("$"))
MAX_TOKENS = 8  # tokens considered per request


def new_token() -> str:
    """A fresh owner token (256 random bits, URL-safe base64: 43 characters)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """What the stores keep of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def is_token(value: object) -> bool:
    return isinstance(value, str) and _TOKEN.fullmatch(value) is not None


def check_token(value: object) -> str:
    """``value`` if it looks like an owner token (22-128 characters of ``A-Z a-z 0-9 _ -``), else
    `BeatSyncError` ``bad_owner_token`` (a client offering its own token for a new upload or task)."""
    if not is_token(value):
        raise BeatSyncError("bad_owner_token", "The owner token must be 22 to 128 characters of letters, digits, "
                            "'-' and '_' (as an earlier answer's owner_token).")
    return value  # type: ignore[return-value]


def tokens_of(owner: str | Iterable[str] | None) -> list[str]:
    """The tokens a caller presents (one, several, or none), at most `MAX_TOKENS`, empty ones dropped."""
    if owner is None:
        return []
    items = [owner] if isinstance(owner, str) else list(owner)
    return [t for t in items if isinstance(t, str) and t][:MAX_TOKENS]


def owned_by(stored_hash: str | None, owner: str | Iterable[str] | None) -> str | None:
    """The presented token that owns a resource whose owner hash is ``stored_hash`` (None when none
    does; a resource without an owner hash is owned by nobody). Compared in constant time."""
    if not stored_hash:
        return None
    found = None
    for token in tokens_of(owner):
        if hmac.compare_digest(token_hash(token), stored_hash) and found is None:
            found = token
    return found


def require_owner(stored_hash: str | None, owner: str | Iterable[str] | None, *, what: str = "job") -> str:
    """The presented token that owns the resource; `BeatSyncError` ``owner_required`` when no token
    was presented, ``not_owner`` when none of them owns it."""
    if not tokens_of(owner):
        raise BeatSyncError("owner_required", f"Only the owner of this {what} can do this: send its owner token "
                            "(Authorization: Bearer <owner_token>, or X-BeatSync-Owner).", what=what)
    token = owned_by(stored_hash, owner)
    if token is None:
        raise BeatSyncError("not_owner", f"This owner token does not control this {what}. A shared link lets you "
                            "see it and download its results, not change it.", what=what)
    return token


__all__ = ["check_token", "is_token", "new_token", "owned_by", "require_owner", "token_hash", "tokens_of"]
