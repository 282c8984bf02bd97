"""Settings of what flows in and out of the catalog besides the API: imports and the search log."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ImportSettings(BaseSettings):
    """How catalog imports fetch photos from URLs and buckets (``PRETHRIFT_IMPORT_*``)."""

    model_config = SettingsConfigDict(env_prefix="PRETHRIFT_IMPORT_", extra="ignore", env_ignore_empty=True)

    # Photos fetched at once, over all hosts.
    concurrency: int = Field(default=8, ge=1, le=256)
    connect_timeout_s: float = Field(default=5.0, gt=0, le=120)
    # Longest wait for the next bytes of an answer, and for a whole answer.
    read_timeout_s: float = Field(default=20.0, gt=0, le=600)
    total_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    # Tries per photo on timeouts, 429 and 5xx; waits double from backoff_base_s, and a
    # Retry-After is honoured up to max_retry_after_s (longer asks fail the photo).
    attempts: int = Field(default=4, ge=1, le=20)
    backoff_base_s: float = Field(default=0.5, ge=0, le=60)
    max_retry_after_s: float = Field(default=30.0, ge=0, le=3600)
    max_redirects: int = Field(default=5, ge=0, le=20)
    # Photo URLs may name loopback and private-network hosts (a local catalog server). Off,
    # they are refused, as are link-local (cloud metadata), multicast, unspecified and reserved
    # addresses, which stay refused either way.
    allow_private_hosts: bool = False
    # Exact ADDRESS:PORT pairs allowed even though private ("127.0.0.1:8080,[::1]:8080"): one
    # local server without opening every private address.
    allowed_hosts: str = ""
    # Shopify's webhook signing secret (the app's API secret key, or the one shown under
    # Settings > Notifications > Webhooks); unset, POST /api/webhooks/shopify answers 404.
    shopify_webhook_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "PRETHRIFT_SHOPIFY_WEBHOOK_SECRET", "PRETHRIFT_IMPORT_SHOPIFY_WEBHOOK_SECRET"
        ),
    )
    # How long a delivery id is remembered, so a replay within it changes nothing.
    webhook_replay_window_s: int = Field(default=7 * 24 * 3600, ge=60)


class AnalyticsSettings(BaseSettings):
    """The search log behind the console's Demand page (``PRETHRIFT_ANALYTICS_*``)."""

    model_config = SettingsConfigDict(env_prefix="PRETHRIFT_ANALYTICS_", extra="ignore", env_ignore_empty=True)

    # Off: searches and clicks are not recorded (the Demand page shows what was recorded before).
    enabled: bool = True
    # Raw searches and clicks are deleted after this many days; the daily rollups the page reads
    # for longer periods are kept for rollup_retention_days.
    raw_retention_days: int = Field(default=30, ge=1, le=3650)
    rollup_retention_days: int = Field(default=400, ge=1, le=36500)
    # Searches waiting to be written; past this, new ones are dropped (and counted) rather than
    # holding up a search, so a database outage or a flood cannot grow the process.
    queue_size: int = Field(default=10_000, ge=1, le=1_000_000)
    # Rows per COPY, and how often the writer wakes when fewer are waiting.
    batch_size: int = Field(default=500, ge=1, le=100_000)
    flush_interval_s: float = Field(default=1.0, gt=0, le=60)
    # How often the worker rolls up the log and deletes what has expired.
    upkeep_interval_s: float = Field(default=300.0, gt=0)
    # The shop's search page, for the console's "reproduce this search" links (q and filters
    # are added as its query string); unset: the local page under `prethrift run`.
    search_page_url: str | None = None

    @field_validator("search_page_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL, like https://shop.example/search")
        return value

    @model_validator(mode="after")
    def _rollups_outlive_raw(self) -> AnalyticsSettings:
        if self.rollup_retention_days < self.raw_retention_days:
            raise ValueError(
                "PRETHRIFT_ANALYTICS_ROLLUP_RETENTION_DAYS must be at least "
                "PRETHRIFT_ANALYTICS_RAW_RETENTION_DAYS: rollups are made from the raw rows"
            )
        return self
