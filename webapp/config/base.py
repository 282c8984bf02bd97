"""The shared pieces of the settings: the environment a program runs in, and checks of URLs."""

from __future__ import annotations

import enum
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr


class Environment(enum.StrEnum):
    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"


def require_scheme(value: SecretStr | None, schemes: tuple[str, ...], example: str) -> SecretStr | None:
    """Check a secret URL's scheme; the message shows the expected form, never the value."""
    if value is None:
        return None
    scheme = value.get_secret_value().partition("://")[0].lower()
    if scheme not in schemes:
        raise ValueError(f"must be a URL of the form {example} (the scheme is not one of {', '.join(schemes)})")
    return value


def web_origin(value: Any) -> str:
    """A web origin as browsers send it in the Origin header: scheme://host[:port], lower case."""
    text = str(value).strip()
    parts = urlsplit(text)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
    ):
        raise ValueError(
            f"{text[:80]!r} is not a web origin: write each as scheme://host[:port], such as "
            "https://shop.example or http://localhost:3000 (no path, no '*')"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{text[:80]!r} has no valid port number") from None
    # Browsers leave the scheme's default port out of the Origin header.
    host = parts.netloc.rsplit(":", 1)[0] if port == {"http": 80, "https": 443}[parts.scheme] else parts.netloc
    return f"{parts.scheme}://{host}".lower()
