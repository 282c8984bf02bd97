"""The AWS calls a deploy of the stack program makes, derived from the program itself.

For every AWS resource the program declares (its mock record: any type, WAF and CloudFront
included), the IAM actions of its create, read, update and delete come from AWS's Service
Authorization Reference as policy_sentry ships it offline: the action names are found by the
API's naming convention (`Create<Noun>`, `Describe<Noun>s`, `Put<Noun>`, ...), with a short table
for the resources whose API verbs do not follow it. Each call carries the request context IAM
would see: the resource's ARN built from the Reference's ARN format and the name the stack gives
the resource, and the condition keys the Reference says that action supports (request tags on a
create, the resource's tags afterwards, the boundary on role calls, the record names in a
Route 53 change). Deploy-wide calls (state, image push, service-linked roles, the cost plan
upload) are added to the per-resource ones.

What this cannot see: a call the provider makes that the Reference does not tie to the
resource (a describe of some other resource while waiting), and the second and later resource
types of an action that authorizes against several (only the resource's own ARN is checked).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from policy_sentry.querying.actions import get_action_data, get_actions_for_service

from infra.bootstrap.policies import PROJECT, SERVICE_LINKED, boundary_arn, name_prefix, state_keys
from infra.gpu import GPU_AMI_PARAMETER
from infra.mocks import ACCOUNT_ID

Phase = Literal["create", "read", "update", "delete"]
PHASES: tuple[Phase, ...] = ("create", "read", "update", "delete")
REGION = "us-east-1"
GENERATED_ID = "0a1b2c3d4e5f"

# Pulumi module -> IAM service prefix, where they differ.
SERVICE_OF_MODULE = {
    "lb": "elasticloadbalancing",
    "alb": "elasticloadbalancing",
    "appautoscaling": "application-autoscaling",
    "cognito": "cognito-idp",
}
SERVICE_OF_TYPE = {"aws:cloudwatch/logGroup:LogGroup": "logs"}

# Where the Pulumi type's name is not the API's noun.
NOUN = {
    "aws:ec2/eip:Eip": "Address",
    "aws:rds/instance:Instance": "DBInstance",
    "aws:rds/parameterGroup:ParameterGroup": "DBParameterGroup",
    "aws:rds/subnetGroup:SubnetGroup": "DBSubnetGroup",
    "aws:elasticache/subnetGroup:SubnetGroup": "CacheSubnetGroup",
    "aws:autoscaling/group:Group": "AutoScalingGroup",
    "aws:appautoscaling/target:Target": "ScalableTarget",
    "aws:appautoscaling/policy:Policy": "ScalingPolicy",
    "aws:cloudwatch/metricAlarm:MetricAlarm": "MetricAlarm",
    "aws:lb/listenerRule:ListenerRule": "Rule",
    "aws:ecs/taskDefinition:TaskDefinition": "TaskDefinition",
    "aws:wafv2/webAclAssociation:WebAclAssociation": "WebACL",
}

# Resources whose API verbs the naming convention does not find (or finds wrongly).
ACTIONS: dict[str, dict[Phase, list[str]]] = {
    "aws:s3/bucket:Bucket": {
        "create": ["s3:CreateBucket", "s3:PutBucketTagging"],
        "read": ["s3:ListBucket", "s3:GetBucketTagging", "s3:GetBucketPolicy", "s3:GetBucketAcl"],
        "update": ["s3:PutBucketTagging"],
        "delete": ["s3:DeleteBucket"],
    },
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": {
        "create": ["s3:PutEncryptionConfiguration"],
        "read": ["s3:GetEncryptionConfiguration"],
        "update": ["s3:PutEncryptionConfiguration"],
        "delete": ["s3:PutEncryptionConfiguration"],
    },
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": {
        "create": ["s3:PutLifecycleConfiguration"],
        "read": ["s3:GetLifecycleConfiguration"],
        "update": ["s3:PutLifecycleConfiguration"],
        "delete": ["s3:PutLifecycleConfiguration"],
    },
    "aws:s3/bucketCorsConfiguration:BucketCorsConfiguration": {
        "create": ["s3:PutBucketCORS"],
        "read": ["s3:GetBucketCORS"],
        "update": ["s3:PutBucketCORS"],
        "delete": ["s3:PutBucketCORS"],
    },
    "aws:s3/bucketVersioning:BucketVersioning": {
        "create": ["s3:PutBucketVersioning"],
        "read": ["s3:GetBucketVersioning"],
        "update": ["s3:PutBucketVersioning"],
        "delete": ["s3:PutBucketVersioning"],
    },
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": {
        # AWS made it with the VPC, untagged: the stack adopts it, then owns its rules.
        "create": ["ec2:CreateTags"],
        "read": ["ec2:DescribeSecurityGroups"],
        "update": ["ec2:RevokeSecurityGroupIngress", "ec2:RevokeSecurityGroupEgress"],
        "delete": [],
    },
    "aws:ec2/securityGroup:SecurityGroup": {
        "create": [
            "ec2:CreateSecurityGroup",
            "ec2:AuthorizeSecurityGroupIngress",
            "ec2:AuthorizeSecurityGroupEgress",
        ],
        "read": ["ec2:DescribeSecurityGroups"],
        "update": ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"],
        "delete": ["ec2:DeleteSecurityGroup"],
    },
    "aws:ec2/routeTable:RouteTable": {
        "create": ["ec2:CreateRouteTable", "ec2:CreateRoute"],
        "read": ["ec2:DescribeRouteTables"],
        "update": ["ec2:ReplaceRoute"],
        "delete": ["ec2:DeleteRoute", "ec2:DeleteRouteTable"],
    },
    "aws:ec2/routeTableAssociation:RouteTableAssociation": {
        "create": ["ec2:AssociateRouteTable"],
        "read": ["ec2:DescribeRouteTables"],
        "update": ["ec2:ReplaceRouteTableAssociation"],
        "delete": ["ec2:DisassociateRouteTable"],
    },
    "aws:ec2/internetGateway:InternetGateway": {
        "create": ["ec2:CreateInternetGateway", "ec2:AttachInternetGateway"],
        "read": ["ec2:DescribeInternetGateways"],
        "update": ["ec2:CreateTags"],
        "delete": ["ec2:DetachInternetGateway", "ec2:DeleteInternetGateway"],
    },
    "aws:ec2/eip:Eip": {
        "create": ["ec2:AllocateAddress"],
        "read": ["ec2:DescribeAddresses"],
        "update": ["ec2:CreateTags"],
        "delete": ["ec2:ReleaseAddress"],
    },
    "aws:ec2/vpcEndpoint:VpcEndpoint": {
        "create": ["ec2:CreateVpcEndpoint"],
        "read": ["ec2:DescribeVpcEndpoints"],
        "update": ["ec2:ModifyVpcEndpoint"],
        "delete": ["ec2:DeleteVpcEndpoints"],
    },
    "aws:ecs/service:Service": {
        "create": ["ecs:CreateService"],
        "read": ["ecs:DescribeServices"],
        "update": ["ecs:UpdateService"],
        "delete": ["ecs:UpdateService", "ecs:DeleteService"],
    },
    "aws:ecs/taskDefinition:TaskDefinition": {
        "create": ["ecs:RegisterTaskDefinition"],
        "read": ["ecs:DescribeTaskDefinition"],
        "update": ["ecs:RegisterTaskDefinition"],
        "delete": ["ecs:DeregisterTaskDefinition"],
    },
    "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders": {
        "create": ["ecs:PutClusterCapacityProviders"],
        "read": ["ecs:DescribeClusters"],
        "update": ["ecs:PutClusterCapacityProviders"],
        "delete": ["ecs:PutClusterCapacityProviders"],
    },
    "aws:acm/certificate:Certificate": {
        "create": ["acm:RequestCertificate"],
        "read": ["acm:DescribeCertificate", "acm:ListTagsForCertificate"],
        "update": ["acm:AddTagsToCertificate"],
        "delete": ["acm:DeleteCertificate"],
    },
    "aws:acm/certificateValidation:CertificateValidation": {
        "create": ["acm:DescribeCertificate"],
        "read": ["acm:DescribeCertificate"],
        "update": [],
        "delete": [],
    },
    "aws:route53/record:Record": {
        "create": ["route53:ChangeResourceRecordSets", "route53:GetChange"],
        "read": ["route53:ListResourceRecordSets"],
        "update": ["route53:ChangeResourceRecordSets"],
        "delete": ["route53:ChangeResourceRecordSets"],
    },
    "aws:kms/alias:Alias": {
        "create": ["kms:CreateAlias"],
        "read": ["kms:ListAliases"],
        "update": ["kms:UpdateAlias"],
        "delete": ["kms:DeleteAlias"],
    },
    "aws:kms/key:Key": {
        "create": ["kms:CreateKey", "kms:EnableKeyRotation"],
        "read": ["kms:DescribeKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListResourceTags"],
        "update": ["kms:PutKeyPolicy", "kms:TagResource"],
        "delete": ["kms:ScheduleKeyDeletion"],
    },
    "aws:sns/topicPolicy:TopicPolicy": {
        "create": ["sns:SetTopicAttributes"],
        "read": ["sns:GetTopicAttributes"],
        "update": ["sns:SetTopicAttributes"],
        "delete": ["sns:SetTopicAttributes"],
    },
    "aws:sns/topicSubscription:TopicSubscription": {
        "create": ["sns:Subscribe"],
        "read": ["sns:GetSubscriptionAttributes"],
        "update": ["sns:SetSubscriptionAttributes"],
        "delete": ["sns:Unsubscribe"],
    },
    "aws:sns/topic:Topic": {
        "create": ["sns:CreateTopic", "sns:SetTopicAttributes"],
        "read": ["sns:GetTopicAttributes", "sns:ListTagsForResource"],
        "update": ["sns:SetTopicAttributes"],
        "delete": ["sns:DeleteTopic"],
    },
    "aws:ssm/parameter:Parameter": {
        "create": ["ssm:PutParameter"],
        "read": ["ssm:GetParameter", "ssm:ListTagsForResource"],
        "update": ["ssm:PutParameter"],
        "delete": ["ssm:DeleteParameter"],
    },
    "aws:iam/rolePolicy:RolePolicy": {
        "create": ["iam:PutRolePolicy"],
        "read": ["iam:GetRolePolicy"],
        "update": ["iam:PutRolePolicy"],
        "delete": ["iam:DeleteRolePolicy"],
    },
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": {
        "create": ["iam:AttachRolePolicy"],
        "read": ["iam:ListAttachedRolePolicies"],
        "update": [],
        "delete": ["iam:DetachRolePolicy"],
    },
    "aws:iam/instanceProfile:InstanceProfile": {
        "create": ["iam:CreateInstanceProfile", "iam:AddRoleToInstanceProfile"],
        "read": ["iam:GetInstanceProfile"],
        "update": ["iam:TagInstanceProfile"],
        "delete": ["iam:RemoveRoleFromInstanceProfile", "iam:DeleteInstanceProfile"],
    },
    "aws:iam/role:Role": {
        "create": ["iam:CreateRole"],
        "read": ["iam:GetRole", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies"],
        "update": ["iam:UpdateAssumeRolePolicy", "iam:TagRole"],
        "delete": ["iam:DeleteRole"],
    },
    "aws:cognito/userPoolDomain:UserPoolDomain": {
        "create": ["cognito-idp:CreateUserPoolDomain"],
        "read": ["cognito-idp:DescribeUserPoolDomain"],
        "update": ["cognito-idp:UpdateUserPoolDomain"],
        "delete": ["cognito-idp:DeleteUserPoolDomain"],
    },
    "aws:autoscaling/group:Group": {
        # With a launch template, creating the group runs instances in the caller's name.
        "create": ["autoscaling:CreateAutoScalingGroup", "ec2:RunInstances"],
        "read": ["autoscaling:DescribeAutoScalingGroups"],
        "update": ["autoscaling:UpdateAutoScalingGroup"],
        "delete": ["autoscaling:DeleteAutoScalingGroup"],
    },
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": {
        "create": ["s3:PutBucketOwnershipControls"],
        "read": ["s3:GetBucketOwnershipControls"],
        "update": ["s3:PutBucketOwnershipControls"],
        "delete": ["s3:PutBucketOwnershipControls"],
    },
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": {
        "create": ["s3:PutBucketPublicAccessBlock"],
        "read": ["s3:GetBucketPublicAccessBlock"],
        "update": ["s3:PutBucketPublicAccessBlock"],
        "delete": ["s3:PutBucketPublicAccessBlock"],
    },
    "aws:cloudwatch/metricAlarm:MetricAlarm": {
        "create": ["cloudwatch:PutMetricAlarm"],
        "read": ["cloudwatch:DescribeAlarms", "cloudwatch:ListTagsForResource"],
        "update": ["cloudwatch:PutMetricAlarm", "cloudwatch:TagResource"],
        "delete": ["cloudwatch:DeleteAlarms"],
    },
    "aws:cloudwatch/compositeAlarm:CompositeAlarm": {
        "create": ["cloudwatch:PutCompositeAlarm"],
        "read": ["cloudwatch:DescribeAlarms", "cloudwatch:ListTagsForResource"],
        "update": ["cloudwatch:PutCompositeAlarm", "cloudwatch:TagResource"],
        "delete": ["cloudwatch:DeleteAlarms"],
    },
    "aws:cloudwatch/logGroup:LogGroup": {
        "create": ["logs:CreateLogGroup", "logs:PutRetentionPolicy"],
        "read": ["logs:DescribeLogGroups", "logs:ListTagsForResource"],
        "update": ["logs:PutRetentionPolicy", "logs:TagResource"],
        "delete": ["logs:DeleteLogGroup"],
    },
    "aws:ec2/vpc:Vpc": {
        "create": ["ec2:CreateVpc", "ec2:ModifyVpcAttribute"],
        "read": ["ec2:DescribeVpcs", "ec2:DescribeVpcAttribute"],
        "update": ["ec2:ModifyVpcAttribute"],
        "delete": ["ec2:DeleteVpc"],
    },
    "aws:ec2/subnet:Subnet": {
        "create": ["ec2:CreateSubnet", "ec2:ModifySubnetAttribute"],
        "read": ["ec2:DescribeSubnets"],
        "update": ["ec2:ModifySubnetAttribute"],
        "delete": ["ec2:DeleteSubnet"],
    },
    "aws:lb/loadBalancer:LoadBalancer": {
        "create": [
            "elasticloadbalancing:CreateLoadBalancer",
            "elasticloadbalancing:ModifyLoadBalancerAttributes",
        ],
        "read": [
            "elasticloadbalancing:DescribeLoadBalancers",
            "elasticloadbalancing:DescribeLoadBalancerAttributes",
        ],
        "update": [
            "elasticloadbalancing:ModifyLoadBalancerAttributes",
            "elasticloadbalancing:SetSecurityGroups",
        ],
        "delete": ["elasticloadbalancing:DeleteLoadBalancer"],
    },
    "aws:cloudfront/distribution:Distribution": {
        # The CreateDistributionWithTags API is authorized as these two actions.
        "create": ["cloudfront:CreateDistribution", "cloudfront:TagResource"],
        "read": ["cloudfront:GetDistribution", "cloudfront:ListTagsForResource"],
        "update": ["cloudfront:UpdateDistribution"],
        "delete": ["cloudfront:DeleteDistribution"],
    },
    "aws:wafv2/webAclAssociation:WebAclAssociation": {
        # Checked against the web ACL (wafv2) and the load balancer it guards (elasticloadbalancing).
        "create": ["wafv2:AssociateWebACL", "elasticloadbalancing:SetWebAcl"],
        "read": ["wafv2:GetWebACLForResource"],
        "update": [],
        "delete": ["wafv2:DisassociateWebACL"],
    },
}


# The resource type (in the Reference's ARN formats) each Pulumi type is authorized against,
# where the noun does not name it.
ARN_TYPE: dict[str, str | tuple[str, ...]] = {
    "aws:s3/": "bucket",
    "aws:ec2/defaultSecurityGroup": "security-group",
    "aws:ec2/routeTableAssociation": "route-table",
    "aws:ec2/eip:": "elastic-ip",
    "aws:ec2/natGateway": "natgateway",
    "aws:ec2/vpcEndpoint": "vpc-endpoint",
    "aws:route53/record": "hostedzone",
    "aws:kms/alias": "alias",
    "aws:sns/": "topic",
    "aws:iam/role": "role",
    "aws:iam/instanceProfile": "instance-profile",
    "aws:appautoscaling/": "scalable-target",
    "aws:cognito/": "userpool",
    "aws:ecs/clusterCapacityProviders": "cluster",
    "aws:ecr/": "repository",
    "aws:autoscaling/group": ("autoScalingGroup", "launch-template"),
    "aws:cloudwatch/compositeAlarm": "alarm",
    "aws:cloudwatch/metricAlarm": "alarm",
    "aws:rds/instance": "db",
    "aws:rds/parameterGroup": "pg",
    "aws:rds/subnetGroup": "subgrp",
    "aws:elasticache/subnetGroup": "subnetgroup",
    "aws:elasticache/replicationGroup": "replicationgroup",
    "aws:lb/loadBalancer": "loadbalancer/app",
    "aws:lb/listenerRule": "listener-rule/app",
    "aws:lb/listener": "listener/app",
    "aws:lb/targetGroup": "targetgroup",
    "aws:wafv2/webAclAssociation": ("webacl", "loadbalancer/app"),
    "aws:wafv2/webAcl:": "webacl",
}
# Resources that configure a resource created before them (its tags are on it), by the input
# that names that parent.
PARENT_INPUT = {
    "aws:s3/": "bucket",
    "aws:sns/topicPolicy": "arn",
    "aws:sns/topicSubscription": "topic",
    "aws:ecr/lifecyclePolicy": "repository",
    "aws:iam/rolePolicy": "role",
    "aws:cognito/userPoolClient": "userPoolId",
    "aws:cognito/userPoolDomain": "userPoolId",
    "aws:ecs/clusterCapacityProviders": "clusterName",
    "aws:appautoscaling/policy": "resourceId",
    "aws:ec2/routeTableAssociation": "routeTableId",
    "aws:lb/listener:": "loadBalancerArn",
    "aws:lb/listenerRule": "listenerArn",
    "aws:kms/alias": "targetKeyId",
    "aws:wafv2/webAclAssociation": "webAclArn",
    "aws:acm/certificateValidation": "certificateArn",
}
# Services whose resources keep no tags IAM evaluates: S3 reads bucket tags in policies only once
# attribute-based access is switched on for the bucket, which the stack does not do.
NO_RESOURCE_TAGS = {"s3", "route53"}
# Services whose separate tag call during a create names that create (`<service>:CreateAction`).
TAG_ON_CREATE = {
    "ec2": "ec2:CreateTags",
    "elasticloadbalancing": "elasticloadbalancing:AddTags",
    "ecs": "ecs:TagResource",
}
# The tag write of each service after a create (its change of tags on an update).
TAG_WRITE = {
    "acm": "acm:AddTagsToCertificate",
    "autoscaling": "autoscaling:CreateOrUpdateTags",
    "ec2": "ec2:CreateTags",
    "elasticache": "elasticache:AddTagsToResource",
    "elasticloadbalancing": "elasticloadbalancing:AddTags",
    "iam": "iam:TagRole",
    "rds": "rds:AddTagsToResource",
    "ssm": "ssm:AddTagsToResource",
}

CREATE_VERBS = ("Create", "Put", "Register", "Request", "Allocate")
READ_VERBS = ("Describe", "Get", "List")
UPDATE_VERBS = ("Update", "Modify", "Put")
DELETE_VERBS = ("Delete", "Deregister", "Release")


@dataclass(frozen=True)
class Call:
    resource: str
    """The Pulumi resource (type and name), or what the deploy-wide call is for."""
    phase: Phase
    action: str
    arn: str
    context: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def service_of(typ: str) -> str:
    if typ in SERVICE_OF_TYPE:
        return SERVICE_OF_TYPE[typ]
    module = typ.split(":")[1].split("/")[0]
    return SERVICE_OF_MODULE.get(module, module)


@cache
def _actions(service: str) -> dict[str, str]:
    """The service's actions by lower-cased name (the Reference's spelling as value)."""
    return {a.split(":")[1].lower(): a for a in get_actions_for_service(service)}


def action_exists(action: str) -> bool:
    service, name = action.split(":")
    return name.lower() in _actions(service)


def _by_convention(typ: str, service: str) -> dict[Phase, list[str]]:
    noun = NOUN.get(typ, typ.rsplit(":", 1)[-1])
    known = _actions(service)

    plural = f"{noun[:-1]}ies" if noun.endswith("y") else f"{noun}s"

    def first(verbs: tuple[str, ...], plural_first: bool) -> list[str]:
        forms = (plural, noun) if plural_first else (noun, plural)
        for verb in verbs:
            for form in forms:
                if f"{verb}{form}".lower() in known:
                    return [known[f"{verb}{form}".lower()]]
        return []

    return {
        "create": first(CREATE_VERBS, False),
        "read": first(READ_VERBS, True),
        "update": first(UPDATE_VERBS, False),
        "delete": first(DELETE_VERBS, False) or first(("Delete",), True),
    }


def actions_for(typ: str) -> dict[Phase, list[str]]:
    """The IAM actions of each phase of `typ` (empty lists where the type makes no such call)."""
    if not typ.startswith("aws:"):
        # Other providers (random, docker-build, explicit `pulumi:providers:aws` instances) make
        # no AWS call of their own; the image push is a deploy-wide call below.
        return {phase: [] for phase in PHASES}
    found = ACTIONS.get(typ) or _by_convention(typ, service_of(typ))
    if not found["create"] or not (found["delete"] or typ in ACTIONS):
        raise LookupError(
            f"no IAM actions found for {typ}: add its create/read/update/delete to ACTIONS in {__name__}"
        )
    return found


@cache
def _entries(action: str) -> list[dict[str, Any]]:
    service, name = action.split(":")
    data = get_action_data(service, name)
    if not data:
        raise LookupError(f"{action} is not in AWS's Service Authorization Reference")
    return list(data[service])


def _arn_entries(action: str, typ: str) -> list[dict[str, Any]]:
    """The Reference's entries of `action` for the resources `typ` is authorized against: one per
    hint in ARN_TYPE (an association is checked against both its ends), else the one its noun
    names, else the action's first resource type."""
    entries = _entries(action)
    scoped = [e for e in entries if e["resource_arn_format"] != "*"]
    if not scoped:
        return [entries[0]]
    hints = next((v for k, v in ARN_TYPE.items() if typ.startswith(k)), ())
    hints = (hints,) if isinstance(hints, str) else hints
    noun = typ.rsplit(":", 1)[-1].lower()

    def kind(entry: Mapping[str, Any]) -> tuple[str, str]:
        resource = str(entry["resource_arn_format"]).split(":", 5)[-1]
        return resource, re.sub(r"\$\{[^}]+\}", "", resource).strip("/:").lower()

    found: list[dict[str, Any]] = []
    for hint in hints:
        for entry in scoped:
            resource, k = kind(entry)
            if (hint == "bucket" and resource == "${BucketName}") or (k and k.startswith(hint.lower())):
                found.append(entry)
                break
    if not found:
        found = [e for e in scoped if kind(e)[1].replace("-", "") == noun][:1]
    return found or [scoped[0]]


class Stack:
    """The mock record of one stack, with the names AWS will see for its resources."""

    def __init__(self, record: Mapping[str, Any]) -> None:
        self.record = record
        self.stack = str(record["stack"])
        self.prefix = name_prefix(self.stack)
        self.by_id = {f"{r['name']}-id": r for r in record["resources"]}
        config = record.get("config") or {}
        self.tags: dict[str, str] = dict((config.get("aws:defaultTags") or {}).get("tags") or {})
        autonaming = config.get("pulumi:autonaming") or {}
        resources = ((autonaming.get("providers") or {}).get("aws") or {}).get("resources") or {}
        self.patterns = {typ: str(v["pattern"]) for typ, v in resources.items()}

    def physical_name(self, res: Mapping[str, Any]) -> str:
        inputs = res["inputs"]
        for key in ("name", "family", "alarmName", "bucket", "repository", "domain"):
            value = inputs.get(key)
            if isinstance(value, str) and value:
                # An input holding another resource's id names that resource (a bucket's policy).
                return self.physical_name(self.by_id[value]) if value in self.by_id else value
        return self._autoname(res)

    def _autoname(self, res: Mapping[str, Any]) -> str:
        pattern = self.patterns.get(res["type"])
        if pattern:
            return (
                pattern.replace("${project}", PROJECT)
                .replace("${stack}", self.stack)
                .replace("${name}", res["name"])
                .replace("${hex(6)}", "a1b2c3")
            )
        return f"{res['name']}-a1b2c3d"

    def related(self, res: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
        """The resource that `res`'s input `key` refers to (by id, ARN or name)."""
        value = res["inputs"].get(key)
        if not isinstance(value, str) or not value:
            return None
        if value in self.by_id:
            found: Mapping[str, Any] = self.by_id[value]
            return found
        for other in self.record["resources"]:
            state = other.get("state") or {}
            if value in (state.get("arn"), state.get("name")) and other is not res:
                return dict(other)
        return None

    def cluster_name(self) -> str:
        clusters = [r for r in self.record["resources"] if r["type"] == "aws:ecs/cluster:Cluster"]
        return self.physical_name(clusters[0]) if clusters else self.prefix

    def resource_tags(self) -> dict[str, tuple[str, ...]]:
        return {f"aws:ResourceTag/{k}": (v,) for k, v in self.tags.items()}

    def request_tags(self, res: Mapping[str, Any] | None = None) -> dict[str, tuple[str, ...]]:
        own = (res or {}).get("inputs", {}).get("tags") or {}
        if isinstance(own, list):  # autoscaling groups: [{key, value, propagateAtLaunch}]
            own = {t["key"]: t["value"] for t in own}
        tags = {**self.tags, **own}
        return {**{f"aws:RequestTag/{k}": (str(v),) for k, v in tags.items()}, "aws:TagKeys": tuple(tags)}


def _fill(template: str, values: Mapping[str, str], default: str) -> str:
    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key in values:
            return values[key]
        if key.endswith(("Id", "Number", "Arn")) or key == "Id":
            return GENERATED_ID
        return default

    return re.sub(r"\$\{([^}]+)\}", one, template)


def _placeholders(st: Stack, res: Mapping[str, Any]) -> tuple[dict[str, str], str]:
    typ = res["type"]
    name = st.physical_name(res)
    values = {"Partition": "aws", "Region": REGION, "Account": ACCOUNT_ID, "ClusterName": st.cluster_name()}
    if typ.startswith("aws:s3/") and typ != "aws:s3/bucket:Bucket":
        bucket = st.related(res, "bucket")
        name = st.physical_name(bucket) if bucket else name
    if (
        typ.startswith("aws:iam/")
        and typ != "aws:iam/role:Role"
        and typ != "aws:iam/instanceProfile:InstanceProfile"
    ):
        role = st.related(res, "role")
        name = st.physical_name(role) if role else name
    if typ == "aws:ssm/parameter:Parameter":
        values["ParameterNameWithoutLeadingSlash"] = name.lstrip("/")
    if typ == "aws:kms/alias:Alias":
        values["Alias"] = name.removeprefix("alias/")
    if typ == "aws:route53/record:Record":
        values["Id"] = str(res["inputs"].get("zoneId"))
    if typ == "aws:ecs/taskDefinition:TaskDefinition":
        values["TaskDefinitionFamilyName"] = name
        values["TaskDefinitionRevisionNumber"] = "1"
    if typ == "aws:ecs/service:Service":
        values["ServiceName"] = name
    lb = st.related(res, "resourceArn") or st.related(res, "loadBalancerArn")
    if lb:
        values["LoadBalancerName"] = st.physical_name(lb)
    return values, name


def _context(
    st: Stack, res: Mapping[str, Any], action: str, entry: Mapping[str, Any], phase: Phase, first: bool
) -> dict[str, tuple[str, ...]]:
    # The resource type's keys, and the action's own (the Reference's "*" entry, listed last).
    keys = set(entry["condition_keys"]) | set(_entries(action)[-1]["condition_keys"])
    service = action.split(":")[0]
    typ = res["type"]
    ctx: dict[str, tuple[str, ...]] = {}
    is_tag_write = action in TAG_ON_CREATE.values() or action in TAG_WRITE.values()
    carries_tags = (phase == "create" and (first or is_tag_write)) or (phase == "update" and is_tag_write)
    if carries_tags and "aws:RequestTag/${TagKey}" in keys:
        ctx |= st.request_tags(res)
    has_parent = typ != "aws:s3/bucket:Bucket" and any(typ.startswith(k) for k in PARENT_INPUT)
    # A create and the tag write that belongs to it see no tags on the new resource yet.
    creating = phase == "create" and (first or action in TAG_ON_CREATE.values())
    existing = has_parent or not creating
    if typ == "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup" and phase == "create":
        existing = False  # AWS created it with the VPC, untagged
    if existing and "aws:ResourceTag/${TagKey}" in keys and service not in NO_RESOURCE_TAGS:
        ctx |= st.resource_tags()
    if phase == "create" and not first and f"{service}:CreateAction" in keys and is_tag_write:
        create = actions_for(typ)["create"][0]
        ctx[f"{service}:CreateAction"] = (create.split(":")[1],)
    if "iam:PermissionsBoundary" in keys:
        ctx["iam:PermissionsBoundary"] = (boundary_arn(ACCOUNT_ID, st.stack),)
    if "iam:PolicyARN" in keys and res["inputs"].get("policyArn"):
        ctx["iam:PolicyARN"] = (str(res["inputs"]["policyArn"]),)
    if action == "route53:ChangeResourceRecordSets":
        ctx["route53:ChangeResourceRecordSetsNormalizedRecordNames"] = (
            str(res["inputs"].get("name")).lower().rstrip("."),
        )
    return ctx


def resource_calls(st: Stack, res: Mapping[str, Any]) -> Iterator[Call]:
    typ = res["type"]
    label = f"{typ} {res['name']}"
    values, name = _placeholders(st, res)
    phases = actions_for(typ)
    if typ == "aws:rds/instance:Instance" and res["inputs"].get("replicateSourceDb"):
        # A read replica is created from its source by its own API call.
        phases = {**phases, "create": ["rds:CreateDBInstanceReadReplica"]}
    for phase, actions in phases.items():
        service = service_of(typ)
        extra: list[str] = []
        if phase == "create" and service in TAG_ON_CREATE and actions and actions[0] != TAG_ON_CREATE[service]:
            extra = [TAG_ON_CREATE[service]]
        for i, action in enumerate([*actions, *extra]):
            for entry in _arn_entries(action, typ):
                arn = _fill(entry["resource_arn_format"], values, name)
                context = _context(st, res, action, entry, phase, i == 0)
                yield Call(label, phase, action, arn, context)
            if action.startswith("kms:") and action.endswith("Alias"):
                # AWS checks an alias call against the key it points at as well.
                key = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/{GENERATED_ID}"
                yield Call(label, phase, action, key, st.resource_tags())


def deploy_calls(st: Stack, state_arn: str, secrets_key_arn: str) -> Iterator[Call]:
    """Calls a `pulumi up` makes besides the resources' own: state, lock, secrets, image push,
    service-linked roles, the roles it hands to ECS and EC2, and the cost plan it records."""
    keys = state_keys(st.stack)
    state = f"{state_arn}/"
    checkpoint = keys["checkpoint"].removesuffix("*")
    lock = keys["locks"].replace("*", "8f0c6c2e.json")
    history = keys["history"].replace("*", f"{st.stack}-1733200000.history.json")
    for phase in PHASES:
        yield Call("state", phase, "s3:GetObject", state + ".pulumi/meta.yaml")
        yield Call("state", phase, "s3:ListBucket", state_arn, {"s3:prefix": (lock.rsplit("/", 1)[0] + "/",)})
        yield Call("state", phase, "s3:PutObject", state + lock)
        yield Call("state", phase, "s3:DeleteObject", state + lock)
        yield Call("state", phase, "s3:GetObject", state + checkpoint)
        yield Call("state", phase, "kms:Decrypt", secrets_key_arn)
        if phase != "read":
            yield Call("state", phase, "s3:PutObject", state + checkpoint)
            yield Call("state", phase, "s3:PutObject", state + history)
            yield Call("state", phase, "kms:Encrypt", secrets_key_arn)
            yield Call("state", phase, "kms:GenerateDataKey", secrets_key_arn)
    types = {r["type"] for r in st.record["resources"]}
    # The program's lookups (invokes), made by a preview as well as by a deploy.
    for phase in PHASES:
        yield Call("lookup", phase, "ec2:DescribeAvailabilityZones", "*")
        if "aws:ec2/launchTemplate:LaunchTemplate" in types:
            ami = f"arn:aws:ssm:{REGION}::parameter{GPU_AMI_PARAMETER}"
            yield Call("lookup", phase, "ssm:GetParameter", ami)
    repo = f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/{st.prefix}"
    yield Call("image push", "create", "ecr:GetAuthorizationToken", "*")
    for action in (
        "ecr:BatchCheckLayerAvailability",
        "ecr:InitiateLayerUpload",
        "ecr:UploadLayerPart",
        "ecr:CompleteLayerUpload",
        "ecr:PutImage",
        "ecr:BatchGetImage",
        "ecr:DescribeImages",
    ):
        yield Call("image push", "create", action, repo, st.resource_tags())
    services = {service_of(t) for t in types if t.startswith("aws:")}
    linked = {
        "ecs.amazonaws.com": "ecs",
        "elasticloadbalancing.amazonaws.com": "elasticloadbalancing",
        "rds.amazonaws.com": "rds",
        "elasticache.amazonaws.com": "elasticache",
        "ecs.application-autoscaling.amazonaws.com": "application-autoscaling",
        "autoscaling.amazonaws.com": "autoscaling",
    }
    assert set(linked) == set(SERVICE_LINKED)
    for aws_service, service in linked.items():
        if service in services:
            yield Call(
                "service-linked role",
                "create",
                "iam:CreateServiceLinkedRole",
                f"arn:aws:iam::{ACCOUNT_ID}:role/aws-service-role/{aws_service}/AWSServiceRole",
                {"iam:AWSServiceName": (aws_service,)},
            )
    for res in st.record["resources"]:
        if res["type"] == "aws:iam/role:Role":
            role_arn = f"arn:aws:iam::{ACCOUNT_ID}:role/{st.physical_name(res)}"
            to = "ec2.amazonaws.com" if "ec2.amazonaws.com" in str(res["inputs"]) else "ecs-tasks.amazonaws.com"
            ctx = {**st.resource_tags(), "iam:PassedToService": (to,)}
            yield Call(f"pass {res['name']}", "create", "iam:PassRole", role_arn, ctx)
    for res in st.record["resources"]:
        if res["type"] == "aws:s3/bucket:Bucket" and "images" in res["name"]:
            # The deploy records the cost plan beside the images for the ops console.
            obj = f"arn:aws:s3:::{st.physical_name(res)}/deploy/plan-{st.stack}.json"
            yield Call("cost plan upload", "create", "s3:PutObject", obj)


def stack_calls(record: Mapping[str, Any], state_arn: str, secrets_key_arn: str) -> list[Call]:
    """Every call of a first deploy, a read (refresh), an update and a destroy of the stack, with
    its state in `state_arn` and its secrets under `secrets_key_arn` (the bootstrap's)."""
    st = Stack(record)
    calls = [c for r in record["resources"] if r["custom"] for c in resource_calls(st, r)]
    return calls + list(deploy_calls(st, state_arn, secrets_key_arn))
