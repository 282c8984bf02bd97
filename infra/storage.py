"""Storage layer: the images bucket (browser uploads by presigned URL, photos read through the
CloudFront distribution of infra/cdn.py) and the bucket that receives the load balancer's access
logs. Both get the same guard rails."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra import cdn
from infra.config import StorageConfig


@dataclass(frozen=True)
class StorageArgs:
    config: StorageConfig
    name_prefix: str
    access_log_days: int
    alb_log_prefix: str = "alb"


def tls_only_statement(bucket_arn: str) -> dict[str, Any]:
    """Deny every request that does not use TLS (FSBP S3.5)."""
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


class Storage(pulumi.ComponentResource):
    """Images bucket and access-log bucket: private, encrypted, TLS-only, no ACLs; the photos'
    CDN, the one reader the images bucket lets in besides the tasks' roles."""

    images_bucket_name: pulumi.Output[str]
    images_bucket_arn: pulumi.Output[str]
    images_cdn_url: pulumi.Output[str]
    logs_bucket_name: pulumi.Output[str]
    logs_ready: list[pulumi.Resource]
    """Resources the ALB must wait for: it checks it may write logs when it is created."""

    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prethrift:infra:Storage", name, None, opts)
        cfg = args.config

        # SSE-S3: CloudFront's origin access control cannot decrypt objects under the AWS-managed
        # aws/s3 KMS key (its key policy cannot grant CloudFront), and the photos are public content.
        images, images_block = self._bucket(f"{name}-images", cfg.force_destroy, sse="AES256")
        images_cdn = cdn.ImagesCdn(
            f"{name}-images-cdn",
            cdn.ImagesCdnArgs(args.name_prefix, images.bucket_regional_domain_name, cfg.cdn_price_class),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._policy(
            f"{name}-images",
            images,
            images_block,
            pulumi.Output.all(images.arn, images_cdn.distribution_arn).apply(
                lambda arns: [tls_only_statement(arns[0]), cdn.read_statement(arns[0], arns[1])]
            ),
        )
        aws.s3.BucketVersioning(
            f"{name}-images-versioning",
            bucket=images.id,
            versioning_configuration={"status": "Enabled"},
            opts=pulumi.ResourceOptions(parent=images),
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-images-lifecycle",
            bucket=images.id,
            rules=[
                {
                    "id": "expire-old-versions",
                    "status": "Enabled",
                    "filter": {},
                    "noncurrent_version_expiration": {"noncurrent_days": cfg.noncurrent_version_days},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
                }
            ],
            opts=pulumi.ResourceOptions(parent=images),
        )
        if cfg.cors_origins:
            aws.s3.BucketCorsConfiguration(
                f"{name}-images-cors",
                bucket=images.id,
                cors_rules=[
                    {
                        "allowed_methods": ["GET", "PUT", "HEAD"],
                        "allowed_origins": list(cfg.cors_origins),
                        "allowed_headers": ["content-type", "content-md5", "x-amz-*"],
                        "expose_headers": ["ETag"],
                        "max_age_seconds": 3000,
                    }
                ],
                opts=pulumi.ResourceOptions(parent=images),
            )

        account_id = aws.get_caller_identity().account_id
        elb_account = aws.elb.get_service_account().arn
        prefix = args.alb_log_prefix

        def alb_delivery(arn: str) -> list[dict[str, Any]]:
            # ALB access logs support SSE-S3 only, and are written by the region's ELB account.
            return [
                {
                    "Sid": "AlbAccessLogs",
                    "Effect": "Allow",
                    "Principal": {"AWS": elb_account},
                    "Action": "s3:PutObject",
                    "Resource": f"{arn}/{prefix}/AWSLogs/{account_id}/*",
                }
            ]

        logs, logs_block = self._bucket(f"{name}-logs", True, sse="AES256")
        logs_policy = self._policy(
            f"{name}-logs",
            logs,
            logs_block,
            logs.arn.apply(lambda arn: [tls_only_statement(arn), *alb_delivery(arn)]),
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-logs-lifecycle",
            bucket=logs.id,
            rules=[
                {
                    "id": "expire-access-logs",
                    "status": "Enabled",
                    "filter": {},
                    "expiration": {"days": args.access_log_days},
                }
            ],
            opts=pulumi.ResourceOptions(parent=logs),
        )

        self.images_bucket_name = images.bucket
        self.images_bucket_arn = images.arn
        self.images_cdn_url = images_cdn.url
        self.logs_bucket_name = logs.bucket
        self.logs_ready = [logs_policy]
        self.register_outputs(
            {"images_bucket": images.bucket, "logs_bucket": logs.bucket, "images_cdn_url": images_cdn.url}
        )

    def _bucket(
        self, name: str, force_destroy: bool, sse: str
    ) -> tuple[aws.s3.Bucket, aws.s3.BucketPublicAccessBlock]:
        bucket = aws.s3.Bucket(name, force_destroy=force_destroy, opts=pulumi.ResourceOptions(parent=self))
        child = pulumi.ResourceOptions(parent=bucket)
        block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child,
        )
        rule: Any = {"apply_server_side_encryption_by_default": {"sse_algorithm": sse}}
        if sse == "aws:kms":
            rule["bucket_key_enabled"] = True
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption", bucket=bucket.id, rules=[rule], opts=child
        )
        return bucket, block

    @staticmethod
    def _policy(
        name: str,
        bucket: aws.s3.Bucket,
        block: aws.s3.BucketPublicAccessBlock,
        statements: pulumi.Output[list[dict[str, Any]]],
    ) -> aws.s3.BucketPolicy:
        """The bucket's policy: `statements` always start with the TLS-only deny."""
        return aws.s3.BucketPolicy(
            f"{name}-policy",
            bucket=bucket.id,
            policy=statements.apply(lambda found: json.dumps({"Version": "2012-10-17", "Statement": found})),
            # The public access block must exist before a policy is attached.
            opts=pulumi.ResourceOptions(parent=bucket, depends_on=[block]),
        )
