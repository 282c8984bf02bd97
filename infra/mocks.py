"""Run the real Pulumi program (infra/__main__.py) offline, under Pulumi's mocks, and record
every resource it declares: type, name, parent, dependencies, inputs, which inputs are secret,
and the stack outputs. The plan, the policy tests and the infra tests read this record.

Pulumi's runtime state is process-global, so `record()` runs the program in a fresh Python
process (`python -m infra.mocks STACK`); `record_in_process()` is what that process runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import runpy
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from infra import resource_types as T
from infra.stacks import REPO_ROOT, list_stacks, read_stack_file

__all__ = ["REPO_ROOT", "list_stacks", "read_stack_file", "record", "record_in_process"]

ACCOUNT_ID = "123456789012"
SECRET_MARK = "[secret]"


def _unwrap(value: Any, path: str, secrets: set[str]) -> Any:
    """Replace Pulumi's secret wrappers by their values, noting where they were."""
    from pulumi.runtime import rpc

    if rpc.is_rpc_secret(value):
        secrets.add(path)
        return _unwrap(rpc.unwrap_rpc_secret(value), path, secrets)
    if isinstance(value, dict):
        return {k: _unwrap(v, f"{path}.{k}" if path else k, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v, f"{path}[{i}]", secrets) for i, v in enumerate(value)]
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def _computed(typ: str, name: str, inputs: Mapping[str, Any], region: str) -> dict[str, Any]:
    """Provider-computed attributes the program reads back, shaped like AWS's."""
    physical = inputs.get("name") or f"{name}-0a1b2c3"
    service = typ.split(":")[1].split("/")[0] if ":" in typ else "x"
    state: dict[str, Any] = {
        "arn": f"arn:aws:{service}:{region}:{ACCOUNT_ID}:{typ.rsplit(':', 1)[-1].lower()}/{physical}",
        "name": physical,
    }
    if typ == T.S3_BUCKET:
        bucket = inputs.get("bucket") or f"{name}-0a1b2c3"
        state |= {
            "bucket": bucket,
            "arn": f"arn:aws:s3:::{bucket}",
            "bucketRegionalDomainName": f"{bucket}.s3.{region}.amazonaws.com",
        }
    elif typ == T.CLOUDFRONT_DISTRIBUTION:
        state |= {
            "arn": f"arn:aws:cloudfront::{ACCOUNT_ID}:distribution/E0A1B2C3{name[-4:].upper()}",
            "domainName": "d0a1b2c3d4e5f6.cloudfront.net",
        }
    elif typ == T.LB_LOAD_BALANCER:
        state |= {
            "dnsName": f"{name}-123.{region}.elb.amazonaws.com",
            "arnSuffix": f"app/{name}/0a1b2c3",
            "zoneId": "Z35SXDOTRQ7X7K",
        }
    elif typ == T.LB_TARGET_GROUP:
        state |= {"arnSuffix": f"targetgroup/{name}/0a1b2c3"}
    elif typ == T.RDS_INSTANCE:
        state |= {
            "address": f"{name}.abc.{region}.rds.amazonaws.com",
            "port": 5432,
            "identifier": f"{name}-0a1b2c3",
        }
    elif typ == T.ELASTICACHE_REPLICATION_GROUP:
        state |= {"primaryEndpointAddress": f"master.{name}.abc.cache.amazonaws.com"}
    elif typ == T.ECR_REPOSITORY:
        state |= {
            "repositoryUrl": f"{ACCOUNT_ID}.dkr.ecr.{region}.amazonaws.com/{physical}",
            "registryId": ACCOUNT_ID,
        }
    elif typ == T.CLOUDWATCH_LOG_GROUP:
        state |= {"arn": f"arn:aws:logs:{region}:{ACCOUNT_ID}:log-group:{physical}"}
    elif typ == T.SSM_PARAMETER:
        state |= {"arn": f"arn:aws:ssm:{region}:{ACCOUNT_ID}:parameter{physical}"}
    elif typ == T.DOCKER_BUILD_IMAGE:
        tag = (inputs.get("tags") or ["image:local"])[0]
        state |= {"ref": f"{tag}@sha256:{'0' * 64}", "digest": f"sha256:{'0' * 64}"}
    elif typ == T.ACM_CERTIFICATE:
        hosts = [inputs.get("domainName"), *(inputs.get("subjectAlternativeNames") or [])]
        state |= {
            "domainValidationOptions": [
                {
                    "domainName": host,
                    "resourceRecordName": f"_0a1b2c3.{host}.",
                    "resourceRecordType": "CNAME",
                    "resourceRecordValue": "_4d5e6f.acm-validations.aws.",
                }
                for host in hosts
                if host
            ]
        }
    elif typ == T.ACM_CERTIFICATE_VALIDATION:
        state |= {"certificateArn": inputs.get("certificateArn")}
    elif typ == T.ROUTE53_RECORD:
        state |= {"fqdn": str(inputs.get("name") or name).rstrip(".")}
    elif typ == T.KMS_KEY:
        state |= {"keyId": f"{name}-0a1b2c3", "arn": f"arn:aws:kms:{region}:{ACCOUNT_ID}:key/{name}-0a1b2c3"}
    elif typ == T.COGNITO_USER_POOL:
        state |= {"arn": f"arn:aws:cognito-idp:{region}:{ACCOUNT_ID}:userpool/{region}_0a1b2c3"}
    elif typ == T.RANDOM_PASSWORD:
        # Distinct and recognisable, so tests can search for leaks of each generated secret.
        state |= {"result": f"MOCKSECRET-{name}-MOCKSECRET"}
    return state


def record_in_process(
    stack: str, root: Path = REPO_ROOT, overrides: Mapping[str, Any] | None = None, program: str = "infra"
) -> dict[str, Any]:
    """Run `root/<program>/__main__.py` for `stack` under mocks in this process (once per process).

    `program` "infra" is the stacks' program (project file and stack files at `root`); any other
    folder is a project of its own (its Pulumi.yaml and stack files inside it), e.g. infra/bootstrap."""
    import pulumi
    from google.protobuf import json_format
    from pulumi.runtime import mocks as pulumi_mocks
    from pulumi.runtime import rpc
    from pulumi.runtime.stack import run_pulumi_func

    project_dir = root if program == "infra" else root / program
    project = str((yaml.safe_load((project_dir / "Pulumi.yaml").read_text()) or {}).get("name", "prethrift"))
    stack_config: dict[str, Any] = {}
    if program == "infra":
        # What CI passes on every deploy (`--config imageTag=$SHA`); overrides may drop or change it.
        stack_config = {"prethrift:imageTag": "local", **read_stack_file(stack, root)}
    elif (project_dir / f"Pulumi.{stack}.yaml").exists():
        stack_config = read_stack_file(stack, project_dir)
    stack_config.update({k if ":" in k else f"prethrift:{k}": v for k, v in (overrides or {}).items()})
    stack_config = {k: v for k, v in stack_config.items() if v is not None}
    region = str(stack_config.get("aws:region", "us-east-1"))
    resources: list[dict[str, Any]] = []

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            inputs = _unwrap(args.inputs, "", set())
            state = {**inputs, **_computed(args.typ, args.name, inputs, region)}
            return f"{args.name}-id", state

        def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
            token = args.token
            if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
                names = [f"{region}{z}" for z in "abc"]
                return {"names": names, "zoneIds": [f"use1-az{i}" for i in (1, 2, 4)]}, []
            if token == "aws:index/getRegion:getRegion":
                return {"region": region, "name": region, "id": region}, []
            if token == "aws:index/getCallerIdentity:getCallerIdentity":
                return {
                    "accountId": ACCOUNT_ID,
                    "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/ci",
                    "userId": "AIDA",
                    "id": ACCOUNT_ID,
                }, []
            if token == "aws:elb/getServiceAccount:getServiceAccount":
                return {"arn": "arn:aws:iam::127311923021:root", "id": "127311923021"}, []
            if token == "aws:ssm/getParameter:getParameter":
                return {
                    "name": args.args.get("name"),
                    "value": "ami-0123456789abcdef0",
                    "type": "String",
                    "id": args.args.get("name"),
                }, []
            if token == "aws:ecr/getRepository:getRepository":
                # The bootstrap's repository, looked up by name (infra/registry.py).
                repo = str(args.args.get("name"))
                return {
                    "name": repo,
                    "id": repo,
                    "arn": f"arn:aws:ecr:{region}:{ACCOUNT_ID}:repository/{repo}",
                    "registryId": ACCOUNT_ID,
                    "repositoryUrl": f"{ACCOUNT_ID}.dkr.ecr.{region}.amazonaws.com/{repo}",
                    "imageTagMutability": "IMMUTABLE",
                }, []
            if token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
                return {
                    "userName": "AWS",
                    "password": "mock-token",
                    "id": ACCOUNT_ID,
                    "authorizationToken": "bW9jaw==",
                    "proxyEndpoint": "https://ecr",
                }, []
            raise LookupError(f"infra/mocks.py has no answer for invoke {token}; add one")

    class Monitor(pulumi_mocks.MockMonitor):
        def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC name)
            response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
            if request.type != "pulumi:pulumi:Stack":
                secrets: set[str] = set()
                inputs = _unwrap(rpc.deserialize_properties(request.object), "", secrets)
                state = _unwrap(
                    json_format.MessageToDict(response.object) if response.object else {},
                    "",
                    set(),
                )
                resources.append(
                    {
                        "urn": response.urn,
                        "type": request.type,
                        "name": request.name,
                        "custom": bool(request.custom),
                        "parent": request.parent or None,
                        "dependencies": sorted(set(request.dependencies)),
                        "inputs": _jsonable(inputs),
                        "secret_inputs": sorted(secrets),
                        "state": _jsonable(state),
                    }
                )
            return response

    pulumi.runtime.set_all_config(
        {k: v if isinstance(v, str) else json.dumps(v) for k, v in stack_config.items()}
    )
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    pulumi.runtime.set_mocks(Mocks(), project=project, stack=stack, preview=False, monitor=Monitor(Mocks()))
    main_file = root / program / "__main__.py"

    def run_program() -> None:
        runpy.run_path(str(main_file), run_name="__main__")

    loop.run_until_complete(run_pulumi_func(run_program))

    outputs: dict[str, Any] = {}
    secret_outputs: list[str] = []
    root_resource = pulumi.runtime.get_root_resource()
    exported = getattr(root_resource, "outputs", {}) or {}

    async def resolve() -> None:
        for key, value in exported.items():
            out = pulumi.Output.from_input(value)
            outputs[key] = _jsonable(await out.future())
            if await out.is_secret():
                secret_outputs.append(key)

    loop.run_until_complete(resolve())
    loop.close()
    return {
        "stack": stack,
        "config": _jsonable(stack_config),
        "resources": resources,
        "outputs": outputs,
        "secret_outputs": sorted(secret_outputs),
    }


def record(
    stack: str, root: Path = REPO_ROOT, overrides: Mapping[str, Any] | None = None, program: str = "infra"
) -> dict[str, Any]:
    """Run the program for `stack` under mocks in a fresh process and return its record.

    The program comes from `root` (default: this checkout), the mock harness from this file."""
    # Run this file by path, not as `infra.mocks`: the program must import the `infra`
    # package of `root` (another git revision, for plan --compare), not this one.
    boot = (
        "import runpy, sys; sys.argv = sys.argv[1:]; "
        f"runpy.run_path({str(Path(__file__).resolve())!r}, run_name='__main__')"
    )
    cmd = [sys.executable, "-c", boot, "mocks", stack, "--root", str(root), "--program", program]
    for key, value in (overrides or {}).items():
        cmd += ["--set", f"{key}={json.dumps(value)}"]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])])
    )
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the Pulumi program failed under mocks for stack {stack}:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stack")
    parser.add_argument("--root", type=Path, default=REPO_ROOT)
    parser.add_argument("--program", default="infra", help="the program's folder under --root")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="override a stack config key, e.g. gpuWorker='{\"enabled\": true}'",
    )
    ns = parser.parse_args(argv)
    overrides = {}
    for item in ns.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    root = ns.root.resolve()
    # Run as a script, sys.path[0] is this folder; its modules must not shadow anything.
    sys.path[:] = [str(root)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
    result = record_in_process(ns.stack, root, overrides, ns.program)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
