"""Fingerprints: a short hash of everything that changes L(S).

The caller passes exactly the fields that change L (model weights digest, objective and its
settings, calibration data digest, dtype); versions and device are metadata, never hashed."""

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal data always hashes equally."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(identity: dict[str, Any]) -> str:
    """16 hex digits of the SHA-256 of the canonical JSON of `identity`."""
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:16]


def file_digest(path: str, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
