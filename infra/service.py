"""Service layer: the ECS cluster and the three services that run the one image.

`prethrift serve` (API, behind the ALB), `prethrift worker` (embedding worker, no port) and
`prethrift console` (ops console, behind the ALB) on Fargate and Fargate Spot; optionally
a GPU worker on EC2. Every task carries an OpenTelemetry collector that forwards traces to
X-Ray and metrics to CloudWatch."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.config import AppConfig, CapacityStrategy, GpuWorkerConfig, SearchLogConfig, TaskSize
from infra.containers import ContainerArgs, container_definitions
from infra.gpu import GpuCapacity, GpuCapacityArgs
from infra.ports import API_PORT, CONSOLE_PORT


@dataclass(frozen=True)
class ServicesArgs:
    name_prefix: str
    stack: str
    app: AppConfig
    capacity: CapacityStrategy
    api: TaskSize
    worker: TaskSize
    console: TaskSize
    gpu_worker: GpuWorkerConfig
    image_ref: pulumi.Output[str]
    gpu_image_ref: pulumi.Output[str] | None
    repository_arn: pulumi.Output[str]
    subnet_ids: list[pulumi.Output[str]]
    tasks_security_group_id: pulumi.Output[str]
    api_target_group_arn: pulumi.Output[str]
    console_target_group_arn: pulumi.Output[str]
    alb_arn_suffix: pulumi.Output[str]
    api_target_group_arn_suffix: pulumi.Output[str]
    listeners: list[aws.lb.Listener]
    console_route: list[pulumi.Resource]
    images_bucket_name: pulumi.Output[str]
    images_bucket_arn: pulumi.Output[str]
    images_cdn_url: pulumi.Output[str] | None
    secret_arns: dict[str, pulumi.Output[str]]
    ssm_path_arn: pulumi.Output[str]
    log_groups: dict[str, pulumi.Output[str]]
    log_group_arns: dict[str, pulumi.Output[str]]
    region: str = "us-east-1"
    extra_env: dict[str, str] = field(default_factory=dict)
    search_log: SearchLogConfig = field(default_factory=SearchLogConfig)
    search_page_url: pulumi.Input[str] | None = None


class Services(pulumi.ComponentResource):
    """Cluster, IAM roles, task definitions, services and their autoscaling."""

    cluster_name: pulumi.Output[str]
    service_names: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: ServicesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prethrift:infra:Services", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        cluster = aws.ecs.Cluster(
            f"{name}-cluster",
            name=args.name_prefix,
            settings=[{"name": "containerInsights", "value": "enhanced"}],
            opts=child,
        )
        gpu: GpuCapacity | None = None
        if args.gpu_worker.enabled:
            gpu = GpuCapacity(
                f"{name}-gpu",
                GpuCapacityArgs(
                    config=args.gpu_worker,
                    name_prefix=args.name_prefix,
                    cluster_name=args.name_prefix,
                    subnet_ids=args.subnet_ids,
                    security_group_id=args.tasks_security_group_id,
                ),
                opts=child,
            )
        providers: list[pulumi.Input[str]] = ["FARGATE", "FARGATE_SPOT"]
        if gpu is not None:
            providers.append(gpu.capacity_provider_name)
        fargate_strategy = self._strategy(args.capacity)
        capacity = aws.ecs.ClusterCapacityProviders(
            f"{name}-capacity",
            cluster_name=cluster.name,
            capacity_providers=providers,
            default_capacity_provider_strategies=fargate_strategy,
            opts=child,
        )

        execution_role = self._execution_role(name, args)
        containers = ContainerArgs(
            stack=args.stack,
            region=args.region,
            app=args.app,
            images_bucket_name=args.images_bucket_name,
            secret_arns=args.secret_arns,
            log_groups=args.log_groups,
            images_cdn_url=args.images_cdn_url,
            extra_env=args.extra_env,
            search_log=args.search_log,
            search_page_url=args.search_page_url,
        )

        specs: list[tuple[str, TaskSize, list[str], int | None, pulumi.Output[str] | None]] = [
            ("api", args.api, ["serve"], API_PORT, args.api_target_group_arn),
            ("worker", args.worker, ["worker"], None, None),
            ("console", args.console, ["console"], CONSOLE_PORT, args.console_target_group_arn),
        ]
        self.service_names = {}
        services: dict[str, aws.ecs.Service] = {}
        for program, size, command, port, target_group in specs:
            task = aws.ecs.TaskDefinition(
                f"{name}-{program}-task",
                family=f"{args.name_prefix}-{program}",
                cpu=str(size.cpu),
                memory=str(size.memory),
                network_mode="awsvpc",
                requires_compatibilities=["FARGATE"],
                runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": "X86_64"},
                execution_role_arn=execution_role.arn,
                task_role_arn=self._task_role(name, args, program).arn,
                volumes=[{"name": "tmp"}],
                container_definitions=container_definitions(containers, program, command, args.image_ref, port),
                opts=child,
            )
            services[program] = self._service(
                name, args, program, cluster, task, size, fargate_strategy, port, target_group, capacity
            )

        if gpu is not None and args.gpu_image_ref is not None:
            gpu_cfg = args.gpu_worker
            task = aws.ecs.TaskDefinition(
                f"{name}-gpu-worker-task",
                family=f"{args.name_prefix}-gpu-worker",
                cpu=str(gpu_cfg.cpu),
                memory=str(gpu_cfg.memory),
                network_mode="awsvpc",
                requires_compatibilities=["EC2"],
                execution_role_arn=execution_role.arn,
                task_role_arn=self._task_role(name, args, "gpu-worker").arn,
                volumes=[{"name": "tmp"}],
                container_definitions=container_definitions(
                    containers, "gpu-worker", ["worker"], args.gpu_image_ref, None, device="cuda", gpus=1
                ),
                opts=child,
            )
            size = TaskSize(
                gpu_cfg.cpu, gpu_cfg.memory, gpu_cfg.desired_count, gpu_cfg.desired_count, gpu_cfg.desired_count
            )
            services["gpu-worker"] = self._service(
                name,
                args,
                "gpu-worker",
                cluster,
                task,
                size,
                [{"capacity_provider": gpu.capacity_provider_name, "weight": 1, "base": 0}],
                None,
                None,
                capacity,
                rollout=(gpu.deployment_minimum_healthy_percent, gpu.deployment_maximum_percent),
            )

        for program, service in services.items():
            self.service_names[program] = service.name
        self.cluster_name = cluster.name
        self.register_outputs({"cluster": cluster.name, "services": self.service_names})

    @staticmethod
    def _strategy(capacity: CapacityStrategy) -> list[Any]:
        strategy: list[Any] = []
        if capacity.fargate_weight or capacity.fargate_base:
            strategy.append(
                {
                    "capacity_provider": "FARGATE",
                    "weight": capacity.fargate_weight,
                    "base": capacity.fargate_base,
                }
            )
        if capacity.spot_weight:
            strategy.append({"capacity_provider": "FARGATE_SPOT", "weight": capacity.spot_weight, "base": 0})
        return strategy

    def _execution_role(self, name: str, args: ServicesArgs) -> aws.iam.Role:
        """One execution role: ECS pulls the image, writes logs and injects the secrets."""
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-execution-role", assume_role_policy=json.dumps(iam.ECS_TASKS_TRUST), opts=child
        )
        aws.iam.RolePolicy(
            f"{name}-execution-policy",
            role=role.id,
            policy=pulumi.Output.json_dumps(
                iam.execution_policy(args.repository_arn, args.log_group_arns, args.secret_arns)
            ),
            opts=child,
        )
        return role

    def _task_role(self, name: str, args: ServicesArgs, program: str) -> aws.iam.Role:
        """One task role per program, with only what that program calls; no SSM read."""
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-{program}-task-role", assume_role_policy=json.dumps(iam.ECS_TASKS_TRUST), opts=child
        )
        aws.iam.RolePolicy(
            f"{name}-{program}-task-policy",
            role=role.id,
            policy=pulumi.Output.json_dumps(
                iam.task_policy(program, args.images_bucket_arn, args.log_group_arns["metrics"])
            ),
            opts=child,
        )
        return role

    def _service(
        self,
        name: str,
        args: ServicesArgs,
        program: str,
        cluster: aws.ecs.Cluster,
        task: aws.ecs.TaskDefinition,
        size: TaskSize,
        strategy: list[Any],
        port: int | None,
        target_group: pulumi.Output[str] | None,
        capacity: aws.ecs.ClusterCapacityProviders,
        rollout: tuple[int, int] = (100, 200),
    ) -> aws.ecs.Service:
        load_balancers: Any = (
            [{"target_group_arn": target_group, "container_name": program, "container_port": port}]
            if target_group is not None
            else []
        )
        service = aws.ecs.Service(
            f"{name}-{program}",
            name=program,
            cluster=cluster.arn,
            task_definition=task.arn,
            desired_count=size.desired_count,
            capacity_provider_strategies=strategy,
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=args.subnet_ids,
                security_groups=[args.tasks_security_group_id],
                assign_public_ip=False,
            ),
            load_balancers=load_balancers,
            # Loading CLIP takes a while; /startedz answers 503 until it is done.
            health_check_grace_period_seconds=180 if load_balancers else None,
            deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(enable=True, rollback=True),
            deployment_minimum_healthy_percent=rollout[0],
            deployment_maximum_percent=rollout[1],
            enable_ecs_managed_tags=True,
            propagate_tags="SERVICE",
            enable_execute_command=False,
            # `pulumi up` returns when the new tasks are healthy, or fails (and the circuit
            # breaker rolls back), so the smoke test that follows sees the new version.
            wait_for_steady_state=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                # Created after (and destroyed before) the capacity providers and the routes that
                # send it traffic, so neither a create nor a destroy can race.
                depends_on=[
                    capacity,
                    *args.listeners,
                    *(args.console_route if program == "console" else []),
                ],
                # Autoscaling owns the running count after the first deployment.
                ignore_changes=["desiredCount"],
            ),
        )
        if size.max_count > size.min_count:
            self._autoscaling(
                name, args, program, cluster, service, size, port is not None and program == "api"
            )
        return service

    def _autoscaling(
        self,
        name: str,
        args: ServicesArgs,
        program: str,
        cluster: aws.ecs.Cluster,
        service: aws.ecs.Service,
        size: TaskSize,
        by_requests: bool,
    ) -> None:
        child = pulumi.ResourceOptions(parent=self)
        target = aws.appautoscaling.Target(
            f"{name}-{program}-scaling",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat("service/", cluster.name, "/", service.name),
            min_capacity=size.min_count,
            max_capacity=size.max_count,
            opts=child,
        )
        aws.appautoscaling.Policy(
            f"{name}-{program}-cpu-scaling",
            policy_type="TargetTrackingScaling",
            service_namespace=target.service_namespace,
            scalable_dimension=target.scalable_dimension,
            resource_id=target.resource_id,
            target_tracking_scaling_policy_configuration={
                "target_value": 60,
                "predefined_metric_specification": {
                    "predefined_metric_type": "ECSServiceAverageCPUUtilization"
                },
                "scale_in_cooldown": 300,
                "scale_out_cooldown": 60,
            },
            opts=child,
        )
        if by_requests:
            aws.appautoscaling.Policy(
                f"{name}-{program}-requests-scaling",
                policy_type="TargetTrackingScaling",
                service_namespace=target.service_namespace,
                scalable_dimension=target.scalable_dimension,
                resource_id=target.resource_id,
                target_tracking_scaling_policy_configuration={
                    "target_value": size.requests_per_target,
                    "predefined_metric_specification": {
                        "predefined_metric_type": "ALBRequestCountPerTarget",
                        "resource_label": pulumi.Output.concat(
                            args.alb_arn_suffix, "/", args.api_target_group_arn_suffix
                        ),
                    },
                    "scale_in_cooldown": 300,
                    "scale_out_cooldown": 60,
                },
                opts=child,
            )
