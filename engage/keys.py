"""API keys: random secrets shown once, stored only as a prefix and a hash.

A key is ``<kind>_<random>``. The database keeps the first characters (so people can
tell keys apart) and the SHA-256 of the whole key; a leaked dump holds no usable key.
The keys are long random strings, so a fast hash is as safe as a slow one here and
keeps API authentication cheap on every request.
"""

import hashlib
import hmac
import secrets

PREFIX_LENGTH = 10


def generate_key(kind: str) -> str:
    """Return a new random API key of the given kind (``trk`` or ``app``)."""
    return f"{kind}_{secrets.token_urlsafe(30)}"


def hash_key(key: str) -> str:
    """Return the stored form of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_prefix(key: str) -> str:
    """Return the visible start of a key."""
    return key[:PREFIX_LENGTH]


def key_matches(key: str, stored_hash: str) -> bool:
    """Tell whether ``key`` is the key whose hash is stored, in constant time."""
    return bool(stored_hash) and hmac.compare_digest(hash_key(key), stored_hash)


def generate_site_id() -> str:
    """Return a new public site id."""
    return secrets.token_hex(10)
