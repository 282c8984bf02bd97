"""Photo delivery: a CloudFront distribution in front of the private images bucket.

CloudFront reads the bucket through an origin access control (SigV4-signed requests from the
distribution); the bucket stays private, and its policy lets exactly this distribution read the
photos. The app hands out plain URLs under the distribution (PRETHRIFT_IMAGES_CDN_URL): listing
photos are public content every shopper sees, and their keys are content hashes that never
change, so they are cached at the edge and in browsers. Transfer from S3 to CloudFront is free;
shoppers are billed at CloudFront's rate instead of S3's internet rate (infra/pricing.py).
https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/private-content-restricting-access-to-s3.html
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

# AWS managed policies (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/
# using-managed-cache-policies.html): cache by path only for up to a year (no query string,
# cookies or headers: a photo's key is its content hash), and the security response headers.
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
SECURITY_HEADERS = "67f7725c-6f97-4210-82d7-5512b31e9d03"
# Image keys are items/<2 hex>/<sha256>.<ext> (webapp/items): the distribution reads nothing else.
PHOTO_PREFIX = "items/"


@dataclass(frozen=True)
class ImagesCdnArgs:
    name_prefix: str
    bucket_regional_domain_name: pulumi.Output[str]
    price_class: str = "PriceClass_100"


def read_statement(bucket_arn: str, distribution_arn: str) -> dict[str, Any]:
    """The bucket policy statement that lets exactly this distribution read the photos."""
    return {
        "Sid": "CloudFrontReadsPhotos",
        "Effect": "Allow",
        "Principal": {"Service": "cloudfront.amazonaws.com"},
        "Action": "s3:GetObject",
        "Resource": f"{bucket_arn}/{PHOTO_PREFIX}*",
        "Condition": {"StringEquals": {"AWS:SourceArn": distribution_arn}},
    }


class ImagesCdn(pulumi.ComponentResource):
    """Origin access control and the distribution (HTTPS only, GET and HEAD only)."""

    distribution_arn: pulumi.Output[str]
    url: pulumi.Output[str]

    def __init__(self, name: str, args: ImagesCdnArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prethrift:infra:ImagesCdn", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        oac = aws.cloudfront.OriginAccessControl(
            f"{name}-oac",
            name=f"{args.name_prefix}-images",
            description="CloudFront reads the images bucket with signed requests",
            origin_access_control_origin_type="s3",
            signing_behavior="always",
            signing_protocol="sigv4",
            opts=child,
        )
        distribution = aws.cloudfront.Distribution(
            f"{name}-distribution",
            comment=f"{args.name_prefix} item photos",
            enabled=True,
            is_ipv6_enabled=True,
            http_version="http2and3",
            price_class=args.price_class,
            origins=[
                {
                    "origin_id": "images",
                    "domain_name": args.bucket_regional_domain_name,
                    "origin_access_control_id": oac.id,
                }
            ],
            default_cache_behavior={
                "target_origin_id": "images",
                "viewer_protocol_policy": "https-only",
                "allowed_methods": ["GET", "HEAD"],
                "cached_methods": ["GET", "HEAD"],
                "cache_policy_id": CACHING_OPTIMIZED,
                "response_headers_policy_id": SECURITY_HEADERS,
                # JPEG, PNG and WebP are compressed already.
                "compress": False,
            },
            restrictions={"geo_restriction": {"restriction_type": "none"}},
            viewer_certificate={"cloudfront_default_certificate": True},
            opts=child,
        )
        self.distribution_arn = distribution.arn
        self.url = distribution.domain_name.apply(lambda host: f"https://{host}")
        self.register_outputs({"url": self.url})
