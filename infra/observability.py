"""Observability layer: log groups with retention before the services start, then alarms on
the API's 5xx rate, its p99 latency and every service's CPU, sent to an SNS topic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.config import ObservabilityConfig


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


class Alarms(pulumi.ComponentResource):
    """Alarms that page on what a user notices: errors, slowness, saturation."""

    topic_arn: pulumi.Output[str]

    def __init__(self, name: str, args: AlarmsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prethrift:infra:Alarms", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = args.config

        topic = aws.sns.Topic(f"{name}-topic", kms_master_key_id="alias/aws/sns", opts=child)
        if cfg.alarm_email:
            aws.sns.TopicSubscription(
                f"{name}-email",
                topic=topic.arn,
                protocol="email",
                endpoint=cfg.alarm_email,
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

        aws.cloudwatch.MetricAlarm(
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
        aws.cloudwatch.MetricAlarm(
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
