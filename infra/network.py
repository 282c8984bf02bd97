"""Network layer: a VPC over `az_count` zones, public subnets for the ALB and NAT, private
subnets for tasks, database and cache, NAT per the stack's strategy, and security groups."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.config import NetworkConfig
from infra.ports import APP_PORTS


@dataclass(frozen=True)
class NetworkArgs:
    config: NetworkConfig
    name_prefix: str
    console_port: int | None = None
    """The console's own listener port (no console host name), open to `console_cidrs` only."""
    console_cidrs: tuple[str, ...] = ()
    sign_in_at_edge: bool = False
    """The ALB signs operators in (Cognito): it needs HTTPS out to the identity provider."""


class Network(pulumi.ComponentResource):
    """VPC, subnets, routing and the security groups each tier uses."""

    vpc_id: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]
    alb_sg_id: pulumi.Output[str]
    tasks_sg_id: pulumi.Output[str]
    database_sg_id: pulumi.Output[str]
    cache_sg_id: pulumi.Output[str]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prethrift:infra:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = args.config

        zones = aws.get_availability_zones(state="available").names[: cfg.az_count]
        if len(zones) < cfg.az_count:
            raise ValueError(f"region offers {len(zones)} AZs, network.azCount is {cfg.az_count}")
        # /20 per subnet: public subnets first, then private ones, leaving room to grow.
        blocks = list(ipaddress.ip_network(cfg.cidr).subnets(new_prefix=20))

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=cfg.cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": f"{args.name_prefix}-vpc"},
            opts=child,
        )
        # A VPC's default security group must allow nothing (FSBP EC2.2).
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, ingress=[], egress=[], opts=child)
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, opts=child)
        public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt",
            vpc_id=vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
            opts=child,
        )

        public_subnets: list[aws.ec2.Subnet] = []
        private_subnets: list[aws.ec2.Subnet] = []
        for i, zone in enumerate(zones):
            public = aws.ec2.Subnet(
                f"{name}-public-{i}",
                vpc_id=vpc.id,
                cidr_block=str(blocks[i]),
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags={"Name": f"{args.name_prefix}-public-{zone}", "tier": "public"},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{i}-rta",
                subnet_id=public.id,
                route_table_id=public_rt.id,
                opts=child,
            )
            public_subnets.append(public)
            private_subnets.append(
                aws.ec2.Subnet(
                    f"{name}-private-{i}",
                    vpc_id=vpc.id,
                    cidr_block=str(blocks[cfg.az_count + i]),
                    availability_zone=zone,
                    map_public_ip_on_launch=False,
                    tags={"Name": f"{args.name_prefix}-private-{zone}", "tier": "private"},
                    opts=child,
                )
            )

        nat_count = 1 if cfg.nat_gateways == "single" else cfg.az_count
        nats = []
        for i in range(nat_count):
            eip = aws.ec2.Eip(f"{name}-nat-{i}-eip", domain="vpc", opts=child)
            nats.append(
                aws.ec2.NatGateway(
                    f"{name}-nat-{i}",
                    allocation_id=eip.id,
                    subnet_id=public_subnets[i].id,
                    tags={"Name": f"{args.name_prefix}-nat-{i}"},
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
                )
            )
        private_rts = []
        for i, subnet in enumerate(private_subnets):
            rt = aws.ec2.RouteTable(
                f"{name}-private-{i}-rt",
                vpc_id=vpc.id,
                routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nats[i % nat_count].id}],
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{i}-rta", subnet_id=subnet.id, route_table_id=rt.id, opts=child
            )
            private_rts.append(rt)
        # Image reads and writes to S3 skip the NAT (free gateway endpoint, no NAT data charge).
        region = aws.get_region()
        aws.ec2.VpcEndpoint(
            f"{name}-s3-endpoint",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{region.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[rt.id for rt in private_rts],
            opts=child,
        )

        alb_ingress: list[Any] = [
            {
                "protocol": "tcp",
                "from_port": port,
                "to_port": port,
                "cidr_blocks": ["0.0.0.0/0"],
                "description": f"public {port}",
            }
            for port in (80, 443)
        ]
        if args.console_port and args.console_cidrs:
            alb_ingress.append(
                {
                    "protocol": "tcp",
                    "from_port": args.console_port,
                    "to_port": args.console_port,
                    "cidr_blocks": list(args.console_cidrs),
                    "description": f"console {args.console_port} from the allow-list",
                }
            )
        alb_egress: list[Any] = [
            {
                "protocol": "tcp",
                "from_port": 0,
                "to_port": 65535,
                "cidr_blocks": [cfg.cidr],
                "description": "to targets in the VPC",
            }
        ]
        if args.sign_in_at_edge:
            # authenticate-cognito: the ALB calls the user pool's token and user-info endpoints.
            # https://docs.aws.amazon.com/elasticloadbalancing/latest/application/listener-authenticate-users.html
            alb_egress.append(
                {
                    "protocol": "tcp",
                    "from_port": 443,
                    "to_port": 443,
                    "cidr_blocks": ["0.0.0.0/0"],
                    "description": "to the sign-in provider (HTTPS)",
                }
            )
        alb_sg = aws.ec2.SecurityGroup(
            f"{name}-alb-sg",
            vpc_id=vpc.id,
            description="Public HTTP(S) to the load balancer",
            ingress=alb_ingress,
            egress=alb_egress,
            opts=child,
        )
        tasks_sg = aws.ec2.SecurityGroup(
            f"{name}-tasks-sg",
            vpc_id=vpc.id,
            description="ECS tasks: app ports from the load balancer only",
            ingress=[
                {
                    "protocol": "tcp",
                    "from_port": port,
                    "to_port": port,
                    "security_groups": [alb_sg.id],
                    "description": f"ALB to {port}",
                }
                for port in APP_PORTS
            ],
            egress=[
                {
                    "protocol": "-1",
                    "from_port": 0,
                    "to_port": 0,
                    "cidr_blocks": ["0.0.0.0/0"],
                    "description": "AWS APIs, image pulls",
                }
            ],
            opts=child,
        )
        database_sg = aws.ec2.SecurityGroup(
            f"{name}-db-sg",
            vpc_id=vpc.id,
            description="PostgreSQL from ECS tasks only",
            ingress=[
                {
                    "protocol": "tcp",
                    "from_port": 5432,
                    "to_port": 5432,
                    "security_groups": [tasks_sg.id],
                    "description": "tasks to PostgreSQL",
                }
            ],
            opts=child,
        )
        cache_sg = aws.ec2.SecurityGroup(
            f"{name}-cache-sg",
            vpc_id=vpc.id,
            description="Valkey/Redis from ECS tasks only",
            ingress=[
                {
                    "protocol": "tcp",
                    "from_port": 6379,
                    "to_port": 6379,
                    "security_groups": [tasks_sg.id],
                    "description": "tasks to cache",
                }
            ],
            opts=child,
        )

        self.vpc_id = vpc.id
        self.public_subnet_ids = [s.id for s in public_subnets]
        self.private_subnet_ids = [s.id for s in private_subnets]
        self.alb_sg_id = alb_sg.id
        self.tasks_sg_id = tasks_sg.id
        self.database_sg_id = database_sg.id
        self.cache_sg_id = cache_sg.id
        self.register_outputs(
            {
                "vpc_id": vpc.id,
                "private_subnet_ids": self.private_subnet_ids,
                "public_subnet_ids": self.public_subnet_ids,
            }
        )
