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


class GpuCapacity(pulumi.ComponentResource):
    """Launch template, Auto Scaling group and managed-scaling capacity provider."""

    capacity_provider_name: pulumi.Output[str]

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
            opts=child,
        )
        group = aws.autoscaling.Group(
            f"{name}-asg",
            min_size=cfg.min_instances,
            max_size=cfg.max_instances,
            vpc_zone_identifiers=args.subnet_ids,
            launch_template={"id": template.id, "version": "$Latest"},
            tags=[{"key": "AmazonECSManaged", "value": "true", "propagate_at_launch": True}],
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
