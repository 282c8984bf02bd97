"""Secrets from SSM Parameter Store, with the process environment as the fallback."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable

import aioboto3
import structlog

log = structlog.get_logger(__name__)


async def fetch_parameters(prefix: str, names: Iterable[str]) -> dict[str, str]:
    """Read SecureString parameters ``{prefix}{NAME}``; missing ones are simply absent."""
    wanted = {f"{prefix.rstrip('/')}/{name}": name for name in names}
    session = aioboto3.Session()
    found: dict[str, str] = {}
    async with session.client(  # type: ignore[call-overload]
        "ssm",
        region_name=os.environ.get("AWS_REGION") or None,
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
    ) as ssm:
        keys = list(wanted)
        for start in range(0, len(keys), 10):  # GetParameters takes at most 10 names
            response = await ssm.get_parameters(Names=keys[start : start + 10], WithDecryption=True)
            for parameter in response.get("Parameters", []):
                found[wanted[parameter["Name"]]] = parameter["Value"]
    return found


def fill_environment_from_ssm(prefix: str, names: Iterable[str]) -> list[str]:
    """Set each variable not already in the environment from SSM; returns the names it set."""
    missing = [name for name in names if not os.environ.get(name)]
    if not missing:
        return []
    values = asyncio.run(fetch_parameters(prefix, missing))
    for name, value in values.items():
        os.environ[name] = value
    log.info("secrets loaded from SSM", prefix=prefix, names=sorted(values))
    return sorted(values)
