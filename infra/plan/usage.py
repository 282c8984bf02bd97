"""Rows that follow usage rather than a resource (photo downloads, S3 requests, metrics, traffic
between zones, backups, exported logs), each from an assumption the stack file states."""

from __future__ import annotations

from infra import pricing
from infra import resource_types as T
from infra.plan.context import PriceContext
from infra.plan.rows import PlanRow, fmt_value


def usage_rows(ctx: PriceContext) -> list[PlanRow]:
    """Costs that follow usage rather than a resource, each from a stated assumption."""
    usage = ctx.usage
    rows = [
        _image_downloads(ctx),
        _image_requests(ctx),
        _collector_metrics(ctx),
        PlanRow(
            "usage:dataTransfer/crossAz",
            "cross-az-traffic",
            "network",
            {},
            round(usage.cross_az_gb * 2 * pricing.CROSS_AZ_GB_EACH_WAY, 2),
            f"assumed {usage.cross_az_gb:g} GB between zones, billed each way",
        ),
    ]
    for db in ctx.by_type.get(T.RDS_INSTANCE, []):
        allocated = float(db["inputs"].get("allocatedStorage") or 0)
        billed = max(0.0, usage.backup_gb - allocated)
        rows.append(
            PlanRow(
                "usage:rds/backupStorage",
                f"{db['name']}-backups",
                "database",
                {"backupRetentionPeriod": fmt_value(db["inputs"].get("backupRetentionPeriod"))},
                round(billed * pricing.RDS_BACKUP_GB_MONTH, 2),
                f"assumed {usage.backup_gb:g} GB of backups; the first {allocated:g} GB are free",
            )
        )
        if db["inputs"].get("enabledCloudwatchLogsExports"):
            rows.append(
                PlanRow(
                    "usage:cloudwatch/rdsLogs",
                    f"{db['name']}-logs",
                    "observability",
                    {},
                    round(usage.rds_logs_gb * pricing.LOGS_INGEST_GB, 2),
                    f"assumed {usage.rds_logs_gb:g} GB/month of exported PostgreSQL logs ingested "
                    f"(RDS's log group keeps them: storage grows {usage.rds_logs_gb:g} GB a month)",
                )
            )
    return rows


def _image_downloads(ctx: PriceContext) -> PlanRow:
    """Photos shoppers' browsers fetch: through CloudFront when the stack has it, else from S3."""
    usage = ctx.usage
    downloads_gb = usage.searches_per_month / 1000 * usage.download_gb_per_1000_searches
    views = usage.searches_per_month * usage.images_per_search
    assumed = (
        f"assumed {usage.searches_per_month:,.0f} searches x {usage.download_gb_per_1000_searches:g} GB "
        f"per 1,000 searches = {downloads_gb:,.0f} GB out"
    )
    if not ctx.count(T.CLOUDFRONT_DISTRIBUTION):
        return PlanRow(
            "usage:dataTransfer/internetOut",
            "image-downloads",
            "network",
            {},
            round(downloads_gb * pricing.DATA_OUT_GB, 2),
            f"{assumed}, presigned from S3 at {pricing.DATA_OUT_GB}/GB",
        )
    free_gb = pricing.CLOUDFRONT_FREE_GB * usage.cdn_free_tier_share
    free_requests = pricing.CLOUDFRONT_FREE_REQUESTS * usage.cdn_free_tier_share
    billed_gb = max(0.0, downloads_gb - free_gb)
    billed_requests = max(0.0, views - free_requests)
    return PlanRow(
        "usage:dataTransfer/internetOut",
        "image-downloads",
        "network",
        {},
        round(
            billed_gb * pricing.CLOUDFRONT_GB + billed_requests / 10_000 * pricing.CLOUDFRONT_HTTPS_PER_10K, 2
        ),
        f"{assumed} through CloudFront at {pricing.CLOUDFRONT_GB}/GB ({billed_gb:,.0f} GB billed after "
        f"{free_gb:,.0f} GB free) and {views / 1e6:,.1f}M requests ({billed_requests / 1e6:,.1f}M billed)",
    )


def _image_requests(ctx: PriceContext) -> PlanRow:
    """S3 requests on the images bucket: uploads, the worker's reads, and photo reads (all of
    them when presigned, CloudFront's cache misses when it fronts the bucket)."""
    usage = ctx.usage
    views = usage.searches_per_month * usage.images_per_search
    if ctx.count(T.CLOUDFRONT_DISTRIBUTION):
        views *= 1 - usage.cdn_cache_hit_ratio
    gets = views + usage.uploads_per_month
    puts = usage.uploads_per_month
    return PlanRow(
        "usage:s3/requests",
        "images-requests",
        "storage",
        {},
        round(puts / 1000 * pricing.S3_PUT_PER_1000 + gets / 1000 * pricing.S3_GET_PER_1000, 2),
        f"{puts:,.0f} PUT (assumed uploads), {gets / 1e6:,.2f}M GET (photo reads that reach S3, worker reads)",
    )


def _collector_metrics(ctx: PriceContext) -> PlanRow:
    metrics, allow_listed = ctx.collector_metrics()
    count = float(metrics) if allow_listed else ctx.usage.collector_series
    how = (
        "allow-listed by the collector" if allow_listed else "every Prometheus series (assumed), no allow-list"
    )
    return PlanRow(
        "usage:cloudwatch/customMetrics",
        "collector-metrics",
        "observability",
        {},
        round(count * pricing.CW_CUSTOM_METRIC_MONTH, 2),
        f"{count:g} custom metric(s), {how}",
    )
