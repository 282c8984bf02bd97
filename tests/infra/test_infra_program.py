"""The real program, run under mocks for both stacks: inventory, sizing from the stack
files, secrets handling, least privilege, and what the containers are told."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.config import ConfigError, from_mapping
from tests.infra.conftest import (
    DIGEST_OVERRIDES,
    GPU_OVERRIDES,
    Record,
    containers,
    of_type,
    one,
    task_for,
    walk,
)

LAYERS = {
    "Network",
    "Storage",
    "Database",
    "Cache",
    "Parameters",
    "Registry",
    "LoadBalancer",
    "Logs",
    "Services",
    "Alarms",
    "Waf",
    "ImagesCdn",
}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_inventory_has_every_layer_and_resource(records: dict[str, Record], stack: str) -> None:
    rec = records[stack]
    components = {r["type"].rsplit(":", 1)[-1] for r in rec["resources"] if not r["custom"]}
    assert components == LAYERS
    counts = {
        "aws:ec2/vpc:Vpc": 1,
        # prod: the primary and one read replica (readReplicas: 1).
        "aws:rds/instance:Instance": 2 if stack == "prod" else 1,
        "aws:elasticache/replicationGroup:ReplicationGroup": 1,
        "aws:s3/bucket:Bucket": 2,
        "aws:lb/loadBalancer:LoadBalancer": 1,
        "aws:ecs/cluster:Cluster": 1,
        "aws:ecs/service:Service": 3,
        "aws:ecs/taskDefinition:TaskDefinition": 3,
        # The image repository and its lifecycle are the bootstrap's: the build job pushes to
        # it before the stack's first `up`. The stack builds nothing.
        "aws:ecr/repository:Repository": 0,
        "aws:ecr/lifecyclePolicy:LifecyclePolicy": 0,
        "docker-build:index:Image": 0,
        "aws:ssm/parameter:Parameter": 5 if stack == "prod" else 4,  # prod's DATABASE_READ_URL
        "aws:sns/topic:Topic": 1,
        "aws:kms/key:Key": 1,
        "aws:cloudwatch/compositeAlarm:CompositeAlarm": 1,
        "aws:iam/role:Role": 4,
        "aws:ec2/vpcEndpoint:VpcEndpoint": 1,
        "aws:cloudfront/distribution:Distribution": 1,
        "aws:cloudfront/originAccessControl:OriginAccessControl": 1,
        "aws:wafv2/webAcl:WebAcl": 1,
        "aws:wafv2/webAclAssociation:WebAclAssociation": 1,
    }
    for typ, n in counts.items():
        assert len(of_type(rec, typ)) == n, typ
    # Every AWS resource belongs to a layer, none hangs off the stack directly.
    for r in rec["resources"]:
        if r["custom"]:
            assert "prethrift:infra:" in (r["parent"] or ""), r["name"]


def test_network_follows_the_stack_files(records: dict[str, Record], stack_files: dict[str, Any]) -> None:
    for stack, nats in (("dev", 1), ("prod", 3)):
        rec, net = records[stack], stack_files[stack]["prethrift:network"]
        assert one(rec, "aws:ec2/vpc:Vpc")["inputs"]["cidrBlock"] == net["cidr"]
        subnets = of_type(rec, "aws:ec2/subnet:Subnet")
        assert len(subnets) == 2 * net["azCount"]
        assert len({s["inputs"]["availabilityZone"] for s in subnets}) == net["azCount"] >= 2
        assert not any(s["inputs"]["mapPublicIpOnLaunch"] for s in subnets)
        assert len(of_type(rec, "aws:ec2/natGateway:NatGateway")) == nats
        private_routes = [rt for rt in of_type(rec, "aws:ec2/routeTable:RouteTable") if "private" in rt["name"]]
        assert {rt["inputs"]["routes"][0]["natGatewayId"] for rt in private_routes} == {
            f"network-nat-{i}-id" for i in range(nats)
        }


def test_database_sizing_and_safety(records: dict[str, Record], stack_files: dict[str, Any]) -> None:
    for stack in ("dev", "prod"):
        db = one(records[stack], "aws:rds/instance:Instance")["inputs"]
        cfg = stack_files[stack]["prethrift:database"]
        assert db["instanceClass"] == cfg["instanceClass"]
        assert db["multiAz"] is cfg["multiAz"]
        assert db["deletionProtection"] is cfg["deletionProtection"]
        assert db["backupRetentionPeriod"] == cfg["backupRetentionDays"] >= 7
        assert int(db["engineVersion"].split(".")[0]) >= 16
        assert db["engine"] == "postgres" and db["storageEncrypted"] is True
        assert db["publiclyAccessible"] is False and db["performanceInsightsEnabled"] is True
        assert db["parameterGroupName"] and db["autoMinorVersionUpgrade"] is True
    assert (
        records["prod"]["resources"]
        and one(records["prod"], "aws:rds/instance:Instance")["inputs"]["multiAz"] is True
    )


def test_cache_failover_only_with_two_nodes(records: dict[str, Record]) -> None:
    dev = one(records["dev"], "aws:elasticache/replicationGroup:ReplicationGroup")
    prod = one(records["prod"], "aws:elasticache/replicationGroup:ReplicationGroup")
    assert (dev["inputs"]["numCacheClusters"], dev["inputs"]["automaticFailoverEnabled"]) == (1, False)
    assert (prod["inputs"]["numCacheClusters"], prod["inputs"]["automaticFailoverEnabled"]) == (2, True)
    for group in (dev, prod):
        i = group["inputs"]
        assert i["atRestEncryptionEnabled"] and i["transitEncryptionEnabled"]
        assert i["snapshotRetentionLimit"] >= 1
        assert "authToken" in group["secret_inputs"]


def test_generated_secrets_never_leak(records: dict[str, Record]) -> None:
    for rec in records.values():
        generated = {r["state"]["result"] for r in of_type(rec, "random:index/randomPassword:RandomPassword")}
        assert len(generated) >= 4
        for r in rec["resources"]:
            plain = {k: v for k, v in r["inputs"].items() if k not in r["secret_inputs"]}
            text = json.dumps(plain)
            assert not any(s in text for s in generated), f"{r['name']} holds a secret in clear"
        assert not any(s in json.dumps(rec["outputs"]) for s in generated)
        for p in of_type(rec, "aws:ssm/parameter:Parameter"):
            assert p["inputs"]["type"] == "SecureString" and "value" in p["secret_inputs"]
    assert set(records["prod"]["outputs"]) >= {"url", "console_url", "images_bucket", "cluster", "services"}


def test_containers_get_secrets_from_ssm_and_known_env(records: dict[str, Record]) -> None:
    from webapp.cli.programs import known_env_vars

    known = known_env_vars()
    for key, rec in records.items():
        params = {
            p["inputs"]["name"].rsplit("/", 1)[-1]: p["state"]["arn"]
            for p in of_type(rec, "aws:ssm/parameter:Parameter")
        }
        for task in of_type(rec, "aws:ecs/taskDefinition:TaskDefinition"):
            for name, c in containers(task).items():
                if name == "otel-collector":
                    continue
                env = {e["name"] for e in c["environment"]}
                secrets = {s["name"]: s["valueFrom"] for s in c.get("secrets", [])}
                assert env <= known, f"{key}/{name}: unknown env {env - known}"
                assert set(secrets) <= known
                assert not env & set(secrets), f"{name} has a secret in plain env"
                assert {
                    "DATABASE_URL",
                    "SENTRY_DSN",
                    "PRETHRIFT_ADMIN_TOKEN",
                    "PRETHRIFT_CONSOLE_PASSWORD",
                    "REDIS_URL",
                }.isdisjoint(env)
                for secret, arn in secrets.items():
                    assert params[secret] == arn
                assert "DATABASE_URL" in secrets
    prod_api = containers(task_for(records["prod"], "api"))["api"]
    assert {s["name"] for s in prod_api["secrets"]} == {"DATABASE_URL", "REDIS_URL", "PRETHRIFT_ADMIN_TOKEN"}
    gpu_api = containers(task_for(records["gpu"], "api"))["api"]
    assert "SENTRY_DSN" in {s["name"] for s in gpu_api["secrets"]}
    console = containers(task_for(records["prod"], "console"))["console"]
    assert "PRETHRIFT_CONSOLE_PASSWORD" in {s["name"] for s in console["secrets"]}


def test_commands_ports_and_health_agree_with_the_app(records: dict[str, Record]) -> None:
    from webapp.config import Settings

    rec = records["prod"]
    api = containers(task_for(rec, "api"))
    env = {e["name"]: e["value"] for e in api["api"]["environment"]}
    assert api["api"]["command"] == ["serve"] and api["migrate"]["command"] == ["migrate"]
    assert {"containerName": "migrate", "condition": "SUCCESS"} in api["api"]["dependsOn"]
    assert env["PRETHRIFT_HOST"] == "0.0.0.0" and env["PRETHRIFT_WORKER_INLINE"] == "false"
    port = api["api"]["portMappings"][0]["containerPort"]
    assert port == int(env["PRETHRIFT_PORT"]) == Settings.model_fields["port"].default
    assert containers(task_for(rec, "worker"))["worker"]["command"] == ["worker"]
    assert "portMappings" not in containers(task_for(rec, "worker"))["worker"]
    console = containers(task_for(rec, "console"))["console"]
    assert console["command"] == ["console"]
    console_env = {e["name"]: e["value"] for e in console["environment"]}
    assert console["portMappings"][0]["containerPort"] == int(console_env["PRETHRIFT_CONSOLE_PORT"])
    assert int(console_env["PRETHRIFT_CONSOLE_PORT"]) == Settings.model_fields["console_port"].default
    groups = {tg["name"]: tg["inputs"] for tg in of_type(rec, "aws:lb/targetGroup:TargetGroup")}
    assert groups["edge-api"]["port"] == port
    assert groups["edge-console"]["port"] == 8050
    for task in of_type(rec, "aws:ecs/taskDefinition:TaskDefinition"):
        for c in containers(task).values():
            assert c["readonlyRootFilesystem"] is True
            assert c["logConfiguration"]["logDriver"] == "awslogs"
        assert "otel-collector" in containers(task)


def test_services_are_private_with_rollback_and_autoscaling(
    records: dict[str, Record], stack_files: dict[str, Any]
) -> None:
    for stack in ("dev", "prod"):
        rec, cap = records[stack], stack_files[stack]["prethrift:capacity"]
        cluster = one(rec, "aws:ecs/cluster:Cluster")["inputs"]
        assert {"name": "containerInsights", "value": "enhanced"} in cluster["settings"]
        providers = one(rec, "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders")["inputs"]
        assert {"FARGATE", "FARGATE_SPOT"} <= set(providers["capacityProviders"])
        weights = {s["capacityProvider"]: s["weight"] for s in providers["defaultCapacityProviderStrategies"]}
        assert weights.get("FARGATE_SPOT", 0) == cap["spotWeight"]
        for svc in of_type(rec, "aws:ecs/service:Service"):
            i = svc["inputs"]
            assert i["networkConfiguration"]["assignPublicIp"] is False
            assert i["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
            assert "launchType" not in i
            size = stack_files[stack][f"prethrift:{i['name']}"]
            assert i["desiredCount"] == size["desiredCount"]
            # `pulumi up` returns only once the new tasks serve; create and destroy cannot race
            # the capacity providers (nor, for the console, the route that sends it traffic).
            assert i["waitForSteadyState"] is True
            capacity = one(rec, "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders")["urn"]
            assert capacity in svc["dependencies"]
        console_svc = next(
            s for s in of_type(rec, "aws:ecs/service:Service") if s["inputs"]["name"] == "console"
        )
        route = "edge-console-host" if stack == "prod" else "edge-console"
        route_urn = next(r["urn"] for r in rec["resources"] if r["name"] == route)
        assert route_urn in console_svc["dependencies"]
        policies = {p["name"]: p["inputs"] for p in of_type(rec, "aws:appautoscaling/policy:Policy")}
        metric = policies["services-api-requests-scaling"]["targetTrackingScalingPolicyConfiguration"]
        assert metric["predefinedMetricSpecification"]["predefinedMetricType"] == "ALBRequestCountPerTarget"
        assert "services-api-cpu-scaling" in policies
        api_task = task_for(rec, "api")["inputs"]
        assert (api_task["cpu"], api_task["memory"]) == (
            str(stack_files[stack]["prethrift:api"]["cpu"]),
            str(stack_files[stack]["prethrift:api"]["memory"]),
        )


def test_load_balancer_https_in_prod_and_explicit_http_in_dev(records: dict[str, Record]) -> None:
    def listeners(rec: Record) -> dict[int, dict[str, Any]]:
        return {int(li["inputs"]["port"]): li["inputs"] for li in of_type(rec, "aws:lb/listener:Listener")}

    prod = listeners(records["prod"])
    # The certificate is issued by ACM for both names and validated through the Route 53 zone.
    cert = one(records["prod"], "aws:acm/certificate:Certificate")
    assert cert["inputs"]["validationMethod"] == "DNS"
    assert [cert["inputs"]["domainName"], *cert["inputs"]["subjectAlternativeNames"]] == [
        "search.prethrift.com",
        "console.prethrift.com",
    ]
    validation = one(records["prod"], "aws:acm/certificateValidation:CertificateValidation")["inputs"]
    assert len(validation["validationRecordFqdns"]) == 2
    assert prod[443]["protocol"] == "HTTPS" and prod[443]["certificateArn"] == cert["state"]["arn"]
    assert prod[443]["sslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    assert prod[80]["defaultActions"][0]["redirect"]["protocol"] == "HTTPS"
    rules = {r["name"]: r["inputs"] for r in of_type(records["prod"], "aws:lb/listenerRule:ListenerRule")}
    console = rules["edge-console-host"]
    assert console["conditions"][0]["hostHeader"]["values"] == ["console.prethrift.com"]
    # Operators sign in at the edge before the console sees a request.
    assert [a["type"] for a in console["actions"]] == ["authenticate-cognito", "forward"]
    alb_sg = next(
        g
        for g in of_type(records["prod"], "aws:ec2/securityGroup:SecurityGroup")
        if g["name"] == "network-alb-sg"
    )
    assert {"protocol": "tcp", "fromPort": 443, "toPort": 443} in [
        {k: e[k] for k in ("protocol", "fromPort", "toPort")} for e in alb_sg["inputs"]["egress"]
    ]
    pool = one(records["prod"], "aws:cognito/userPool:UserPool")["inputs"]
    assert (
        pool["adminCreateUserConfig"]["allowAdminCreateUserOnly"] is True and pool["mfaConfiguration"] == "ON"
    )
    for rec in (records["prod"], records["dev"]):
        metrics = next(
            r["inputs"] for r in of_type(rec, "aws:lb/listenerRule:ListenerRule") if "metrics" in r["name"]
        )
        assert metrics["conditions"][0]["pathPattern"]["values"] == ["/metrics", "/metrics/*"]
        assert metrics["actions"][0]["fixedResponse"]["statusCode"] == "404"
        assert metrics["priority"] < console.get("priority", 10)
    dev = listeners(records["dev"])
    assert 443 not in dev and dev[80]["defaultActions"][0]["type"] == "forward"
    # dev's console port is reachable from the configured ranges only, never from anywhere.
    sg = next(
        g
        for g in of_type(records["dev"], "aws:ec2/securityGroup:SecurityGroup")
        if g["name"] == "network-alb-sg"
    )
    console_ingress = [i for i in sg["inputs"]["ingress"] if i["fromPort"] == 8080]
    assert console_ingress and all("0.0.0.0/0" not in i["cidrBlocks"] for i in console_ingress)
    assert console_ingress[0]["cidrBlocks"] == ["10.20.0.0/16"]
    for stack, protected in (("dev", False), ("prod", True)):
        alb = one(records[stack], "aws:lb/loadBalancer:LoadBalancer")["inputs"]
        assert alb["dropInvalidHeaderFields"] is True and alb["accessLogs"]["enabled"] is True
        assert alb["enableDeletionProtection"] is protected and alb["internal"] is False
    assert records["prod"]["outputs"]["url"] == "https://search.prethrift.com"
    assert records["prod"]["outputs"]["console_url"] == "https://console.prethrift.com"


def _statements(rec: Record, name: str) -> list[dict[str, Any]]:
    policy = next(p for p in of_type(rec, "aws:iam/rolePolicy:RolePolicy") if p["name"] == name)
    return list(json.loads(policy["inputs"]["policy"])["Statement"])


def test_iam_least_privilege(records: dict[str, Record]) -> None:
    rec = records["prod"]
    bucket = next(b for b in of_type(rec, "aws:s3/bucket:Bucket") if "images" in b["name"])
    bucket_arn = bucket["state"]["arn"]
    param_arns = sorted(p["state"]["arn"] for p in of_type(rec, "aws:ssm/parameter:Parameter"))
    wildcard_ok = {
        "ecr:GetAuthorizationToken",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
        "xray:GetSamplingStatisticSummaries",
    }
    programs = ("api", "worker", "console", "gpu-worker")
    gpu = records["gpu"]
    policies = [f"services-{p}-task-policy" for p in programs] + ["services-execution-policy"]
    for name in policies:
        for st in _statements(gpu, name):
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            assert not any(a.endswith(":*") or a == "*" for a in actions)
            if st["Resource"] == "*":
                assert set(actions) <= wildcard_ok, st
    # One task role per service, none of them the execution role, none able to read SSM:
    # ECS injects the secrets through the execution role.
    tasks = of_type(gpu, "aws:ecs/taskDefinition:TaskDefinition")
    roles = {t["inputs"]["taskRoleArn"] for t in tasks}
    assert len(roles) == len(tasks) == 4
    assert not roles & {t["inputs"]["executionRoleArn"] for t in tasks}
    for program in programs:
        statements = _statements(gpu, f"services-{program}-task-policy")
        assert not [a for st in statements for a in json.dumps(st["Action"]).split('"') if a.startswith("ssm:")]
    api = {st["Sid"]: st for st in _statements(rec, "services-api-task-policy")}
    assert api["ImagesObjects"]["Resource"] == f"{bucket_arn}/*"
    assert set(api["ImagesObjects"]["Action"]) == {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}
    assert api["ImagesList"]["Resource"] == bucket_arn
    worker = {st["Sid"]: st for st in _statements(rec, "services-worker-task-policy")}
    assert worker["ImagesObjects"]["Action"] == ["s3:GetObject"]
    console = {st["Sid"]: st for st in _statements(rec, "services-console-task-policy")}
    assert "ImagesObjects" not in console
    assert console["DeployedPlans"]["Action"] == "s3:GetObject"
    assert console["DeployedPlans"]["Resource"] == f"{bucket_arn}/deploy/*"
    execution = {st["Sid"]: st for st in _statements(rec, "services-execution-policy")}
    assert sorted(execution["ReadSecrets"]["Resource"]) == param_arns
    # Only the bootstrap's repository of this stack, looked up by name.
    name = rec["outputs"]["repository_url"].rsplit("/", 1)[1]
    assert name == f"prethrift-{rec['stack']}"
    assert execution["PullImage"]["Resource"] == f"arn:aws:ecr:us-east-1:123456789012:repository/{name}"


def test_storage_bucket_guard_rails(records: dict[str, Record], stack_files: dict[str, Any]) -> None:
    for stack in ("dev", "prod"):
        rec = records[stack]
        versioning = one(rec, "aws:s3/bucketVersioning:BucketVersioning")["inputs"]
        assert versioning["versioningConfiguration"]["status"] == "Enabled"
        cors = one(rec, "aws:s3/bucketCorsConfiguration:BucketCorsConfiguration")["inputs"]
        assert cors["corsRules"][0]["allowedOrigins"] == stack_files[stack]["prethrift:storage"]["corsOrigins"]
        assert "PUT" in cors["corsRules"][0]["allowedMethods"]
        lifecycles = [
            lc["inputs"]["rules"][0]
            for lc in of_type(rec, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
        ]
        assert any("noncurrentVersionExpiration" in rule for rule in lifecycles)
        assert len(of_type(rec, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")) == 2


def test_observability(records: dict[str, Record], stack_files: dict[str, Any]) -> None:
    for stack in ("dev", "prod"):
        rec = records[stack]
        retention = stack_files[stack]["prethrift:observability"]["logRetentionDays"]
        groups = of_type(rec, "aws:cloudwatch/logGroup:LogGroup")
        assert groups and all(g["inputs"]["retentionInDays"] == retention for g in groups)
        alarms = {a["name"]: a["inputs"] for a in of_type(rec, "aws:cloudwatch/metricAlarm:MetricAlarm")}
        assert alarms["alarms-api-p99-latency"]["extendedStatistic"] == "p99"
        assert any(q.get("expression") for q in alarms["alarms-api-5xx-rate"]["metricQueries"])
        assert {"alarms-api-cpu", "alarms-worker-cpu", "alarms-console-cpu"} <= set(alarms)
        assert all(a["alarmActions"] for a in alarms.values())
        collector = containers(task_for(rec, "api"))["otel-collector"]
        config = json.loads(collector["environment"][0]["value"])
        assert config["service"]["pipelines"]["traces"]["exporters"] == ["awsxray"]
        # The collector scrapes the API's Prometheus metrics on loopback, not through the ALB.
        assert config["receivers"]["prometheus"]["config"]["scrape_configs"][0]["static_configs"] == [
            {"targets": ["127.0.0.1:8000"]}
        ]
        # A collector crash must not stop the app; traces are sampled at 10% by default.
        for task in of_type(rec, "aws:ecs/taskDefinition:TaskDefinition"):
            defs = containers(task)
            assert defs["otel-collector"]["essential"] is False
            app = next(c for n, c in defs.items() if n not in ("otel-collector", "migrate"))
            assert {"name": "OTEL_TRACES_SAMPLER_ARG", "value": "0.1"} in app["environment"]

        # Alarms reach a person: a customer-managed key CloudWatch may use, a subscription,
        # and one composite alarm over what users notice.
        key = one(rec, "aws:kms/key:Key")
        statements = json.loads(key["inputs"]["policy"])["Statement"]
        cloudwatch = next(
            st for st in statements if st["Principal"].get("Service") == "cloudwatch.amazonaws.com"
        )
        assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(cloudwatch["Action"])
        assert key["inputs"]["enableKeyRotation"] is True
        topic = one(rec, "aws:sns/topic:Topic")
        assert topic["inputs"]["kmsMasterKeyId"] == key["state"]["arn"]
        composite = one(rec, "aws:cloudwatch/compositeAlarm:CompositeAlarm")["inputs"]
        members = [a for a in alarms if a.split("-", 1)[1] in composite["alarmRule"]]
        assert sorted(members) == [
            "alarms-api-5xx-rate",
            "alarms-api-p99-latency",
            "alarms-api-unhealthy-targets",
            "alarms-queue-not-draining",
        ]
        assert composite["alarmRule"].count("ALARM(") == 4 and " OR " in composite["alarmRule"]
    subscriptions = of_type(records["prod"], "aws:sns/topicSubscription:TopicSubscription")
    assert [(s["inputs"]["protocol"], s["inputs"]["endpoint"]) for s in subscriptions] == [
        ("email", stack_files["prod"]["prethrift:observability"]["alarmEmail"])
    ]


def test_gpu_worker_is_off_by_default_and_runs_on_ec2_when_on(records: dict[str, Record]) -> None:
    for stack in ("dev", "prod"):
        assert not of_type(records[stack], "aws:ecs/capacityProvider:CapacityProvider")
    rec = records["gpu"]
    provider = one(rec, "aws:ecs/capacityProvider:CapacityProvider")
    providers = one(rec, "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders")["inputs"]
    assert provider["inputs"]["name"] in providers["capacityProviders"]
    template = one(rec, "aws:ec2/launchTemplate:LaunchTemplate")["inputs"]
    assert template["instanceType"] == "g5.xlarge"
    assert template["metadataOptions"]["httpTokens"] == "required"
    task = task_for(rec, "gpu-worker")
    assert task["inputs"]["requiresCompatibilities"] == ["EC2"]
    worker = containers(task)["gpu-worker"]
    assert worker["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
    assert {"name": "PRETHRIFT_CLIP_DEVICE", "value": "cuda"} in worker["environment"]
    # The CUDA image CI built once for the commit, by digest, from the stack's repository.
    assert worker["image"] == (
        f"{rec['outputs']['repository_url']}:local-gpu@{GPU_OVERRIDES['gpuImageDigest']}"
    )
    services = {s["inputs"]["name"]: s["inputs"] for s in of_type(rec, "aws:ecs/service:Service")}
    service = services["gpu-worker"]
    assert service["capacityProviderStrategies"][0]["capacityProvider"] == provider["inputs"]["name"]
    # One GPU per instance: the old task stops before the new one starts, or a deploy at the
    # group's maxSize finds no GPU and waits until it times out. The web services keep 100%.
    assert (service["deploymentMinimumHealthyPercent"], service["deploymentMaximumPercent"]) == (0, 100)
    assert {services[p]["deploymentMinimumHealthyPercent"] for p in ("api", "worker", "console")} == {100}
    # The group, its instances and volumes carry the stack's tags (defaultTags do not reach them;
    # the deploy role only creates what is tagged with its stack).
    group = one(rec, "aws:autoscaling/group:Group")["inputs"]
    tags = {t["key"]: (t["value"], t["propagateAtLaunch"]) for t in group["tags"]}
    assert tags["stack"] == ("prod", True) and tags["project"] == ("prethrift", True)
    assert tags["AmazonECSManaged"] == ("true", True)
    spec = {s["resourceType"]: s["tags"] for s in template["tagSpecifications"]}
    assert spec["instance"]["stack"] == spec["volume"]["stack"] == "prod"


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("loadBalancer", {"plainHttp": False}, "certificateArn"),
        ("api", {"cpu": 1024, "memory": 512}, "not a Fargate size"),
        ("database", {"engineVersion": "15"}, "16 or newer"),
        ("database", {"backupRetentionDays": 1}, "RDS.11"),
        ("network", {"azCount": 1}, "at least 2"),
        ("cache", {"nodeTyp": "x"}, "not a known setting"),
        (
            "loadBalancer",
            {
                "plainHttp": False,
                "certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/" + "0" * 8,
            },
            "placeholder",
        ),
        ("loadBalancer", {"domainName": "search.prethrift.example"}, "reserved example name"),
        ("loadBalancer", {"consoleHost": "console.example.com"}, "reserved example name"),
        ("loadBalancer", {"consoleAllowedCidrs": ["0.0.0.0/0"]}, "must not hold 0.0.0.0/0"),
        ("loadBalancer", {"consoleAllowedCidrs": []}, "console needs a guard"),
        ("loadBalancer", {"consoleAuth": "cognito"}, "needs HTTPS and a consoleHost"),
        ("app", {"environment": "production"}, "alarms must reach a person"),
        ("observability", {"alarmEmail": "ops@example.com"}, "real address"),
        ("app", {"imageTag": ""}, "imageTag is required"),
        ("app", {"imageDigest": "latest"}, "sha256"),
        ("app", {"gpuImageDigest": "sha256:abc"}, "gpuImageDigest must look like sha256"),
    ],
)
def test_config_refuses_unsafe_values(section: str, values: dict[str, Any], message: str) -> None:
    raw: dict[str, Any] = {
        "app": {"imageTag": "abc123", "environment": "staging"},
        "loadBalancer": {"plainHttp": True, "consoleAllowedCidrs": ["192.0.2.0/24"]},
    }
    raw[section] = {**raw.get(section, {}), **values}
    with pytest.raises(ConfigError, match=message):
        from_mapping("test", raw)


def test_no_secret_values_in_any_output(records: dict[str, Record]) -> None:
    for rec in records.values():
        for value in walk(rec["outputs"]):
            assert "MOCKSECRET" not in str(value)


def test_a_tested_digest_is_deployed_as_is(records: dict[str, Record]) -> None:
    """With imageDigest (CI's build job) the tasks pin that digest; the preview passes it back."""
    rec = records["digest"]
    assert rec["outputs"]["image_digest"] == DIGEST_OVERRIDES["imageDigest"]
    assert rec["outputs"]["image_tag"] == DIGEST_OVERRIDES["imageTag"]
    for program in ("api", "worker", "console"):
        image = containers(task_for(rec, program))[program]["image"]
        assert image.endswith(":" + DIGEST_OVERRIDES["imageTag"] + "@" + DIGEST_OVERRIDES["imageDigest"])
    assert rec["outputs"]["image_ref"].endswith(DIGEST_OVERRIDES["imageDigest"])
    assert rec["outputs"]["repository_url"].endswith("/prethrift-dev")


def test_load_balancer_checks_what_it_can_act_on(records: dict[str, Record]) -> None:
    from pydantic import SecretStr

    from webapp.app import create_app
    from webapp.config import DatabaseSettings, LimitsSettings, Settings

    app = create_app(Settings(database=DatabaseSettings(url=SecretStr("postgresql://u:p@db.invalid:5432/x"))))
    routes = {rule.rule for rule in app.url_map.iter_rules()}
    for stack in ("dev", "prod"):
        rec = records[stack]
        groups = {tg["name"]: tg["inputs"] for tg in of_type(rec, "aws:lb/targetGroup:TargetGroup")}
        # The check that stays up through a database failover once the task has been ready,
        # and that the app really serves (/readyz asks the database on every probe).
        path = groups["edge-api"]["healthCheck"]["path"]
        assert path == "/startedz" and path in routes
        # The app closes an idle suggestion socket itself before the ALB would cut it silently.
        api = containers(task_for(rec, "api"))["api"]
        env = {e["name"]: e["value"] for e in api["environment"]}
        ws_idle = LimitsSettings(ws_idle_s=env["PRETHRIFT_LIMITS_WS_IDLE_S"]).ws_idle_s
        alb = one(rec, "aws:lb/loadBalancer:LoadBalancer")["inputs"]
        assert alb["idleTimeout"] >= ws_idle + 30
        # ...and the app keeps idle HTTP connections longer than the ALB does, so the ALB never
        # reuses a connection the app is closing (a 502 for the shopper).
        keep_alive = Settings(keep_alive_s=env["PRETHRIFT_KEEP_ALIVE_S"]).keep_alive_s
        assert keep_alive > alb["idleTimeout"]


def test_waf_guards_the_alb(records: dict[str, Record], stack_files: dict[str, Any]) -> None:
    for stack in ("dev", "prod"):
        rec = records[stack]
        acl = one(rec, "aws:wafv2/webAcl:WebAcl")
        assert acl["inputs"]["scope"] == "REGIONAL" and "allow" in acl["inputs"]["defaultAction"]
        association = one(rec, "aws:wafv2/webAclAssociation:WebAclAssociation")["inputs"]
        alb = one(rec, "aws:lb/loadBalancer:LoadBalancer")
        assert association["resourceArn"] == alb["state"]["arn"]
        assert association["webAclArn"] == acl["state"]["arn"]
        rules = {r["name"]: r for r in acl["inputs"]["rules"]}
        managed = {
            r["statement"]["managedRuleGroupStatement"]["name"]
            for r in rules.values()
            if "managedRuleGroupStatement" in r["statement"]
        }
        assert managed == {
            "AWSManagedRulesCommonRuleSet",
            "AWSManagedRulesKnownBadInputsRuleSet",
            "AWSManagedRulesAmazonIpReputationList",
        }
        assert len({r["priority"] for r in rules.values()}) == len(rules)
        # Photos are multipart bodies far above the common set's 8 KB body rule: it only counts.
        common = rules["AWSManagedRulesCommonRuleSet"]["statement"]["managedRuleGroupStatement"]
        assert {"name": "SizeRestrictions_BODY", "actionToUse": {"count": {}}} in common["ruleActionOverrides"]
        limits = stack_files[stack].get("prethrift:loadBalancer", {})
        everything = rules["rate-per-ip"]["statement"]["rateBasedStatement"]
        assert everything["aggregateKeyType"] == "IP" and "scopeDownStatement" not in everything
        assert everything["limit"] == limits.get("wafRateLimit", 3000)
        photo = rules["photo-rate-per-ip"]["statement"]["rateBasedStatement"]
        assert photo["limit"] == limits.get("wafPhotoRateLimit", 300) < everything["limit"]
        assert rules["photo-rate-per-ip"]["action"] == {"block": {}}
        scope = photo["scopeDownStatement"]["andStatement"]["statements"]
        method = scope[0]["byteMatchStatement"]
        assert method["fieldToMatch"] == {"method": {}} and method["searchString"] == "POST"
        paths = {
            (s["byteMatchStatement"]["searchString"], s["byteMatchStatement"]["positionalConstraint"])
            for s in scope[1]["orStatement"]["statements"]
        }
        assert paths == {("/api/search/image", "STARTS_WITH"), ("/api/items", "EXACTLY")}


def test_photos_are_served_by_cloudfront_from_a_private_bucket(records: dict[str, Record]) -> None:
    for stack in ("dev", "prod"):
        rec = records[stack]
        images = next(b for b in of_type(rec, "aws:s3/bucket:Bucket") if "images" in b["name"])
        distribution = one(rec, "aws:cloudfront/distribution:Distribution")
        oac = one(rec, "aws:cloudfront/originAccessControl:OriginAccessControl")["inputs"]
        assert (oac["originAccessControlOriginType"], oac["signingBehavior"]) == ("s3", "always")
        [origin] = distribution["inputs"]["origins"]
        assert origin["domainName"] == images["state"]["bucketRegionalDomainName"]
        assert origin["originAccessControlId"] == "storage-images-cdn-oac-id"
        behaviour = distribution["inputs"]["defaultCacheBehavior"]
        assert behaviour["viewerProtocolPolicy"] == "https-only"
        assert behaviour["allowedMethods"] == ["GET", "HEAD"]
        # The bucket stays private; its policy lets in this distribution, and only to the photos.
        block = next(
            b["inputs"]
            for b in of_type(rec, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
            if "images" in b["name"]
        )
        assert all(block[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls"))
        assert block["restrictPublicBuckets"] is True
        policy = next(p for p in of_type(rec, "aws:s3/bucketPolicy:BucketPolicy") if "images" in p["name"])
        allows = [s for s in json.loads(policy["inputs"]["policy"])["Statement"] if s["Effect"] == "Allow"]
        assert allows == [
            {
                "Sid": "CloudFrontReadsPhotos",
                "Effect": "Allow",
                "Principal": {"Service": "cloudfront.amazonaws.com"},
                "Action": "s3:GetObject",
                "Resource": f"{images['state']['arn']}/items/*",
                "Condition": {"StringEquals": {"AWS:SourceArn": distribution["state"]["arn"]}},
            }
        ]
        # OAC cannot decrypt under the AWS-managed aws/s3 KMS key: the photos use SSE-S3.
        encryption = next(
            e["inputs"]
            for e in of_type(
                rec, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
            )
            if "images" in e["name"]
        )
        assert encryption["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
        # The API hands out photo URLs under the distribution.
        api = containers(task_for(rec, "api"))["api"]
        env = {e["name"]: e["value"] for e in api["environment"]}
        assert env["PRETHRIFT_IMAGES_CDN_URL"] == rec["outputs"]["images_cdn_url"]
        assert env["PRETHRIFT_IMAGES_CDN_URL"] == f"https://{distribution['state']['domainName']}"


def test_collector_sends_cloudwatch_only_what_the_alarms_read(records: dict[str, Record]) -> None:
    from infra.observability import CLOUDWATCH_METRICS

    rec = records["prod"]
    alarmed = {
        q["metric"]["metricName"]
        for a in of_type(rec, "aws:cloudwatch/metricAlarm:MetricAlarm")
        for q in a["inputs"].get("metricQueries") or []
        if q.get("metric", {}).get("namespace") == "Prethrift"
    }
    assert alarmed == set(CLOUDWATCH_METRICS)
    for program in ("api", "worker", "console"):
        collector = containers(task_for(rec, program))["otel-collector"]
        config = json.loads(collector["environment"][0]["value"])
        kept = config["processors"]["filter/cloudwatch"]["metrics"]["include"]
        assert kept == {"match_type": "strict", "metric_names": list(CLOUDWATCH_METRICS)}
        assert config["service"]["pipelines"]["metrics"]["processors"][0] == "filter/cloudwatch"
        emf = config["exporters"]["awsemf"]
        assert emf["dimension_rollup_option"] == "NoDimensionRollup"
        assert emf["metric_declarations"] == [
            {"dimensions": [[]], "metric_name_selectors": [f"^{n}$" for n in CLOUDWATCH_METRICS]}
        ]


def test_prod_reads_from_a_replica_of_its_primary_and_only_the_api_is_given_it(
    records: dict[str, Record],
) -> None:
    rec = records["prod"]
    instances = {r["name"]: r["inputs"] for r in of_type(rec, "aws:rds/instance:Instance")}
    replica = instances["database-replica-1"]
    # The mocks name an instance's identifier after its resource name.
    assert replica["replicateSourceDb"].startswith("database-postgres-")
    assert replica["multiAz"] is False and replica["publiclyAccessible"] is False
    assert replica["instanceClass"] == instances["database-postgres"]["instanceClass"]
    given = {
        r["name"]: {
            s["name"] for c in json.loads(r["inputs"]["containerDefinitions"]) for s in c.get("secrets", [])
        }
        for r in of_type(rec, "aws:ecs/taskDefinition:TaskDefinition")
    }
    assert [name for name, secrets in given.items() if "DATABASE_READ_URL" in secrets] == [
        name for name in given if "api" in name
    ]
    assert not of_type(records["dev"], "aws:rds/instance:Instance")[0]["inputs"].get("replicateSourceDb")
