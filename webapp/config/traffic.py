"""Settings of what shoppers' traffic may cost: per-client limits and suggestions."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
