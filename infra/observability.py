"""Observability layer: log groups with retention before the services start, then alarms on
the API's 5xx rate, its p99 latency, unhealthy targets, an embedding queue that stops
draining and every service's CPU, sent to an SNS topic encrypted with a customer-managed KMS
key that CloudWatch may use (the AWS-managed `alias/aws/sns` key does not let CloudWatch
publish: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html).
One composite alarm, "search unhealthy", says in one line whether users can search."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.config import ObservabilityConfig

METRICS_NAMESPACE = "Prethrift"
# The app metrics the collector turns into CloudWatch metrics (and so custom metrics on the bill,
# each one a month at https://aws.amazon.com/cloudwatch/pricing/): the ones the alarms below
# read, without dimensions. Every other Prometheus series stays on the tasks' /metrics; sending
# them all, with the exporter's default dimension rollups, made about 150 metrics per stack.
CLOUDWATCH_METRICS = ("prethrift_embedding_queue_depth", "prethrift_embeddings_total")


@dataclass(frozen=True)
class LogsArgs:
    config: ObservabilityConfig
    name_prefix: str
    streams: tuple[str, ...]
    """One log group per stream: the services, the collector's own logs, its EMF metrics."""


class Logs(pulumi.ComponentResource):
    """CloudWatch log groups, one per container stream, with the stack's retention."""

    group_names: dict[str, pulumi.Output[str]]
    group_arns: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: LogsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prethrift:infra:Logs", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.group_names = {}
        self.group_arns = {}
        for stream in args.streams:
            group = aws.cloudwatch.LogGroup(
                f"{name}-{stream}",
                name=f"/ecs/{args.name_prefix}/{stream}",
                retention_in_days=args.config.log_retention_days,
                opts=child,
            )
            self.group_names[stream] = group.name
            self.group_arns[stream] = group.arn
        self.register_outputs({"groups": list(self.group_names.values())})


@dataclass(frozen=True)
class AlarmsArgs:
    config: ObservabilityConfig
    name_prefix: str
    alb_arn_suffix: pulumi.Output[str]
    api_target_group_arn_suffix: pulumi.Output[str]
    cluster_name: pulumi.Output[str]
    service_names: dict[str, pulumi.Output[str]]
    metrics_namespace: str = METRICS_NAMESPACE
    """Where the collector puts the app's Prometheus metrics (EMF), e.g. the queue depth."""


class Alarms(pulumi.ComponentResource):
    """Alarms that page on what a user notices: errors, slowness, saturation."""

    topic_arn: pulumi.Output[str]

    def __init__(self, name: str, args: AlarmsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prethrift:infra:Alarms", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = args.config

        topic = self._topic(name, args)
        if cfg.alarm_email:
            aws.sns.TopicSubscription(
                f"{name}-email", topic=topic.arn, protocol="email", endpoint=cfg.alarm_email, opts=child
            )
        if cfg.alarm_https_endpoint:
            aws.sns.TopicSubscription(
                f"{name}-https",
                topic=topic.arn,
                protocol="https",
                endpoint=cfg.alarm_https_endpoint,
                endpoint_auto_confirms=False,
                opts=child,
            )
        actions = [topic.arn]
        lb_dims = {"LoadBalancer": args.alb_arn_suffix, "TargetGroup": args.api_target_group_arn_suffix}

        def alb_metric(metric_id: str, metric: str) -> Any:
            return {
                "id": metric_id,
                "metric": {
                    "namespace": "AWS/ApplicationELB",
                    "metric_name": metric,
                    "dimensions": lb_dims,
                    "period": 60,
                    "stat": "Sum",
                },
            }

        errors = aws.cloudwatch.MetricAlarm(
            f"{name}-api-5xx-rate",
            alarm_description=f"{args.name_prefix}: API 5xx responses above "
            f"{cfg.error_rate_percent}% of requests",
            comparison_operator="GreaterThanThreshold",
            threshold=cfg.error_rate_percent,
            evaluation_periods=5,
            datapoints_to_alarm=3,
            treat_missing_data="notBreaching",
            metric_queries=[
                alb_metric("errors", "HTTPCode_Target_5XX_Count"),
                alb_metric("requests", "RequestCount"),
                {
                    "id": "rate",
                    "expression": "100 * errors / MAX([requests, 1])",
                    "label": "5xx %",
                    "return_data": True,
                },
            ],
            alarm_actions=actions,
            ok_actions=actions,
            opts=child,
        )
        latency = aws.cloudwatch.MetricAlarm(
            f"{name}-api-p99-latency",
            alarm_description=f"{args.name_prefix}: API p99 target response time above "
            f"{cfg.p99_latency_seconds}s",
            namespace="AWS/ApplicationELB",
            metric_name="TargetResponseTime",
            dimensions=lb_dims,
            extended_statistic="p99",
            period=60,
            evaluation_periods=5,
            datapoints_to_alarm=3,
            comparison_operator="GreaterThanThreshold",
            threshold=cfg.p99_latency_seconds,
            treat_missing_data="notBreaching",
            alarm_actions=actions,
            ok_actions=actions,
            opts=child,
        )
        unhealthy = aws.cloudwatch.MetricAlarm(
            f"{name}-api-unhealthy-targets",
            alarm_description=f"{args.name_prefix}: API targets failing the load balancer's /startedz check",
            namespace="AWS/ApplicationELB",
            metric_name="UnHealthyHostCount",
            dimensions=lb_dims,
            statistic="Maximum",
            period=60,
            evaluation_periods=5,
            datapoints_to_alarm=3,
            comparison_operator="GreaterThanThreshold",
            threshold=0,
            treat_missing_data="notBreaching",
            alarm_actions=actions,
            ok_actions=actions,
            opts=child,
        )
        # Jobs wait while nothing is embedded: the worker is down or stuck.
        queue = aws.cloudwatch.MetricAlarm(
            f"{name}-queue-not-draining",
            alarm_description=f"{args.name_prefix}: embedding jobs waiting for 15 minutes with none embedded",
            comparison_operator="GreaterThanThreshold",
            threshold=0,
            evaluation_periods=3,
            datapoints_to_alarm=3,
            treat_missing_data="missing",
            metric_queries=[
                {
                    "id": "depth",
                    "metric": {
                        "namespace": args.metrics_namespace,
                        "metric_name": "prethrift_embedding_queue_depth",
                        "period": 300,
                        "stat": "Minimum",
                    },
                },
                {
                    "id": "embedded",
                    "metric": {
                        "namespace": args.metrics_namespace,
                        "metric_name": "prethrift_embeddings_total",
                        "period": 300,
                        "stat": "Sum",
                    },
                },
                {
                    "id": "stuck",
                    "expression": "IF(depth > 0 AND FILL(embedded, 0) == 0, 1, 0)",
                    "label": "queue not draining",
                    "return_data": True,
                },
            ],
            alarm_actions=actions,
            ok_actions=actions,
            opts=child,
        )
        parts = [errors, latency, unhealthy, queue]
        aws.cloudwatch.CompositeAlarm(
            f"{name}-search-unhealthy",
            alarm_name=f"{args.name_prefix}-search-unhealthy",
            alarm_description=f"{args.name_prefix}: search is unhealthy (errors, latency, targets or the "
            "embedding queue); see the member alarms",
            alarm_rule=pulumi.Output.all(*[a.name for a in parts]).apply(
                lambda names: " OR ".join(f'ALARM("{n}")' for n in names)
            ),
            alarm_actions=actions,
            ok_actions=actions,
            opts=child,
        )
        for service, service_name in args.service_names.items():
            aws.cloudwatch.MetricAlarm(
                f"{name}-{service}-cpu",
                alarm_description=f"{args.name_prefix}: {service} CPU above {cfg.cpu_percent}%",
                namespace="AWS/ECS",
                metric_name="CPUUtilization",
                dimensions={"ClusterName": args.cluster_name, "ServiceName": service_name},
                statistic="Average",
                period=60,
                evaluation_periods=10,
                datapoints_to_alarm=8,
                comparison_operator="GreaterThanThreshold",
                threshold=cfg.cpu_percent,
                treat_missing_data="missing",
                alarm_actions=actions,
                ok_actions=actions,
                opts=child,
            )
        self.topic_arn = topic.arn
        self.register_outputs({"topic_arn": topic.arn})

    def _topic(self, name: str, args: AlarmsArgs) -> aws.sns.Topic:
        """The alarm topic, encrypted with a key whose policy lets CloudWatch publish to it."""
        child = pulumi.ResourceOptions(parent=self)
        account = aws.get_caller_identity().account_id
        key = aws.kms.Key(
            f"{name}-key",
            description=f"{args.name_prefix}: alarm topic encryption",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "AccountAdministers",
                            "Effect": "Allow",
                            "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                            "Action": "kms:*",
                            "Resource": "*",
                        },
                        {
                            "Sid": "CloudWatchPublishes",
                            "Effect": "Allow",
                            "Principal": {"Service": "cloudwatch.amazonaws.com"},
                            "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                            "Resource": "*",
                            "Condition": {"StringEquals": {"aws:SourceAccount": account}},
                        },
                    ],
                }
            ),
            opts=child,
        )
        aws.kms.Alias(
            f"{name}-key-alias", name=f"alias/{args.name_prefix}-alarms", target_key_id=key.key_id, opts=child
        )
        topic = aws.sns.Topic(f"{name}-topic", kms_master_key_id=key.arn, opts=child)
        aws.sns.TopicPolicy(
            f"{name}-topic-policy",
            arn=topic.arn,
            policy=pulumi.Output.json_dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "CloudWatchAlarms",
                            "Effect": "Allow",
                            "Principal": {"Service": "cloudwatch.amazonaws.com"},
                            "Action": "sns:Publish",
                            "Resource": topic.arn,
                            "Condition": {"StringEquals": {"aws:SourceAccount": account}},
                        }
                    ],
                }
            ),
            opts=child,
        )
        return topic
