"""Parameters layer (secrets): SSM SecureString parameters that ECS injects into containers as `secrets`.

Values are generated here or come from the database and cache layers (their URLs carry the
passwords); none of them appears in plain environment variables or in stack outputs."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_random as random


@dataclass(frozen=True)
class ParametersArgs:
    ssm_prefix: str
    """Path prefix for every parameter, e.g. `/prethrift/dev/` (PRETHRIFT_SSM_PREFIX)."""
    database_url: pulumi.Output[str]
    redis_url: pulumi.Output[str]
    database_read_url: pulumi.Output[str] | None = None
    sentry_dsn: pulumi.Output[str] | None = None
    shopify_webhook_secret: pulumi.Output[str] | None = None


class Parameters(pulumi.ComponentResource):
    """One SecureString per secret environment variable, keyed by that variable's name."""

    parameter_arns: dict[str, pulumi.Output[str]]
    path_arn: pulumi.Output[str]
    """ARN pattern that covers this stack's parameters and nothing else."""

    def __init__(self, name: str, args: ParametersArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prethrift:infra:Parameters", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        admin_token = random.RandomPassword(f"{name}-admin-token", length=48, special=False, opts=child)
        console_password = random.RandomPassword(
            f"{name}-console-password", length=32, special=False, opts=child
        )
        values: dict[str, pulumi.Output[str]] = {
            "DATABASE_URL": args.database_url,
            "REDIS_URL": args.redis_url,
            "PRETHRIFT_ADMIN_TOKEN": admin_token.result,
            "PRETHRIFT_CONSOLE_PASSWORD": console_password.result,
        }
        if args.database_read_url is not None:
            values["DATABASE_READ_URL"] = args.database_read_url
        if args.sentry_dsn is not None:
            values["SENTRY_DSN"] = args.sentry_dsn
        if args.shopify_webhook_secret is not None:
            values["PRETHRIFT_SHOPIFY_WEBHOOK_SECRET"] = args.shopify_webhook_secret

        self.parameter_arns = {}
        for env_name, value in values.items():
            parameter = aws.ssm.Parameter(
                f"{name}-{env_name.lower().replace('_', '-')}",
                name=f"{args.ssm_prefix}{env_name}",
                type="SecureString",
                value=pulumi.Output.secret(value),  # type: ignore[arg-type]
                description=f"{env_name} for ECS tasks",
                opts=child,
            )
            self.parameter_arns[env_name] = parameter.arn

        identity = aws.get_caller_identity()
        region = aws.get_region().region
        self.path_arn = pulumi.Output.from_input(
            f"arn:aws:ssm:{region}:{identity.account_id}:parameter{args.ssm_prefix}*"
        )
        self.register_outputs({"parameters": sorted(values)})
