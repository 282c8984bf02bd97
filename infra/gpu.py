"""GPU capacity: an ECS capacity provider backed by an Auto Scaling group of GPU instances.

Fargate cannot run GPUs, so the optional GPU embedding worker runs on EC2. Off unless the
stack file sets `gpuWorker.enabled: true`."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.config import GpuWorkerConfig

# AWS publishes the current ECS GPU-optimised AMI here; reading it keeps drivers current.
GPU_AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"


@dataclass(frozen=True)
class GpuCapacityArgs:
    config: GpuWorkerConfig
    name_prefix: str
    cluster_name: str
    subnet_ids: list[pulumi.Output[str]]
    security_group_id: pulumi.Output[str]


# How ECS replaces the GPU worker's task on a deploy. At the services' 100% minimum healthy the
# new task must start before the old one stops; with one GPU per instance and the group at its
# maxSize (1 by default) it never finds a GPU, and the deploy waits until it times out. The
# worker only drains a queue (a job waits, none is lost), so the old task stops first.
DEPLOYMENT_MINIMUM_HEALTHY_PERCENT = 0
DEPLOYMENT_MAXIMUM_PERCENT = 100


def _stack_tags() -> dict[str, str]:
    """The provider's `aws:defaultTags`: an Auto Scaling group does not take them (its tags are
    its own `tags` blocks), yet the deploy role may only create resources tagged `stack=<stack>`."""
    default = pulumi.Config("aws").get_object("defaultTags") or {}
    tags = default.get("tags") if isinstance(default, dict) else None
    return {str(k): str(v) for k, v in (tags or {}).items()}


class GpuCapacity(pulumi.ComponentResource):
    """Launch template, Auto Scaling group and managed-scaling capacity provider."""

    capacity_provider_name: pulumi.Output[str]
    deployment_minimum_healthy_percent = DEPLOYMENT_MINIMUM_HEALTHY_PERCENT
    deployment_maximum_percent = DEPLOYMENT_MAXIMUM_PERCENT

    def __init__(self, name: str, args: GpuCapacityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prethrift:infra:GpuCapacity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = args.config

        role = aws.iam.Role(
            f"{name}-instance-role",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "sts:AssumeRole",
                            "Principal": {"Service": "ec2.amazonaws.com"},
                        }
                    ],
                }
            ),
            opts=child,
        )
        for index, policy in enumerate(
            (
                "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role",
                "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
            )
        ):
            aws.iam.RolePolicyAttachment(
                f"{name}-instance-policy-{index}", role=role.name, policy_arn=policy, opts=child
            )
        profile = aws.iam.InstanceProfile(f"{name}-instance-profile", role=role.name, opts=child)

        tags = {**_stack_tags(), "Name": f"{args.name_prefix}-gpu"}
        ami = aws.ssm.get_parameter(name=GPU_AMI_PARAMETER).value
        user_data = f"#!/bin/bash\necho ECS_CLUSTER={args.cluster_name} >> /etc/ecs/ecs.config\n"
        template = aws.ec2.LaunchTemplate(
            f"{name}-template",
            image_id=ami,
            instance_type=cfg.instance_type,
            iam_instance_profile={"arn": profile.arn},
            vpc_security_group_ids=[args.security_group_id],
            user_data=base64.b64encode(user_data.encode()).decode(),
            # IMDSv2 only (FSBP EC2.8).
            metadata_options={
                "http_tokens": "required",
                "http_endpoint": "enabled",
                "http_put_response_hop_limit": 2,
            },
            block_device_mappings=[
                {
                    "device_name": "/dev/xvda",
                    "ebs": {
                        "volume_size": 60,
                        "volume_type": "gp3",
                        "encrypted": "true",
                        "delete_on_termination": "true",
                    },
                }
            ],
            # Instances and their volumes carry the stack's tags too (cost allocation, and the
            # deploy role's tag conditions on what it launches).
            tag_specifications=[
                {"resource_type": kind, "tags": tags} for kind in ("instance", "volume", "network-interface")
            ],
            opts=child,
        )
        group = aws.autoscaling.Group(
            f"{name}-asg",
            min_size=cfg.min_instances,
            max_size=cfg.max_instances,
            vpc_zone_identifiers=args.subnet_ids,
            launch_template={"id": template.id, "version": "$Latest"},
            tags=[
                {"key": key, "value": value, "propagate_at_launch": True}
                for key, value in {**tags, "AmazonECSManaged": "true"}.items()
            ],
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["desiredCapacity"]),
        )
        provider = aws.ecs.CapacityProvider(
            f"{name}-provider",
            name=f"{args.name_prefix}-gpu",
            auto_scaling_group_provider={
                "auto_scaling_group_arn": group.arn,
                "managed_scaling": {"status": "ENABLED", "target_capacity": 100},
                "managed_termination_protection": "DISABLED",
            },
            opts=child,
        )
        self.capacity_provider_name = provider.name
        self.register_outputs({"capacity_provider": provider.name})
