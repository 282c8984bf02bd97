"""Recording stand-ins for `pulumi`, `aws`, `docker` and `gh`: the cloud boundary of the workflow
runs in tests/infra/test_workflows_run.py.

Each is a tiny script on the job's PATH that calls `main(tool, state_dir, argv)` here. They share
one fake AWS account and GitHub repository (`account.json` in the state folder), record every
call (`calls.jsonl`), and refuse what the real service would refuse: a call without credentials,
a write with another stack's role, a push of an existing (immutable) tag, a lookup of a
repository the account lacks, a task definition whose image was never pushed. `pulumi preview`
and `pulumi up` run the real program under mocks (infra/mocks.py) with the interpreter of the
virtualenv Pulumi.yaml names, as the Pulumi CLI would, and the policy pack with its own."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
REGISTRY = f"{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com"
ROLE_VARIABLE = "STANDIN_AWS_ROLE"
"""Which role the credentials of configure-aws-credentials stand for (the runner sets it)."""


class Refused(Exception):
    """What the real service answers with an error: message and exit status."""

    def __init__(self, message: str, status: int = 255) -> None:
        super().__init__(message)
        self.status = status


def write_script(bin_dir: Path, tool: str, state_dir: Path) -> None:
    """Put the stand-in for `tool` in `bin_dir`, bound to the account in `state_dir`."""
    repo = Path(__file__).resolve().parents[2]
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / tool
    path.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(repo)!r})\n"
        "from tests.infra.cloud_standins import main\n"
        f"sys.exit(main({tool!r}, {str(state_dir)!r}, sys.argv[1:]))\n"
    )
    path.chmod(0o755)


def new_account(state_dir: Path, repositories: list[str], edge_url: str) -> None:
    """An account as the bootstrap leaves it: these ECR repositories, no stack deployed yet."""
    state_dir.mkdir(parents=True, exist_ok=True)
    account = {
        "repositories": {name: {} for name in repositories},
        "stacks": {},
        "objects": {},
        "comments": [],
        "edge_url": edge_url,
    }
    (state_dir / "account.json").write_text(json.dumps(account))
    (state_dir / "calls.jsonl").write_text("")


def load(state_dir: Path) -> dict[str, Any]:
    account: dict[str, Any] = json.loads((state_dir / "account.json").read_text())
    return account


def calls(state_dir: Path, tool: str | None = None) -> list[dict[str, Any]]:
    lines = (state_dir / "calls.jsonl").read_text().splitlines()
    found = [json.loads(line) for line in lines if line]
    return [c for c in found if tool is None or c["tool"] == tool]


def main(tool: str, state: str, argv: list[str]) -> int:
    state_dir = Path(state)
    # Read before waiting for the account: the writer of this pipe may be a stand-in itself.
    stdin = sys.stdin.read() if tool == "docker" and argv[:1] == ["login"] else ""
    # One call at a time: a pipeline (`aws ecr get-login-password | docker login`) runs two.
    with (state_dir / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _call(tool, state_dir, argv, stdin)


def _call(tool: str, state_dir: Path, argv: list[str], stdin: str) -> int:
    account = load(state_dir)
    entry: dict[str, Any] = {"tool": tool, "argv": argv, "role": os.environ.get(ROLE_VARIABLE)}
    try:
        if tool == "docker" and argv[:1] == ["login"]:
            if stdin.strip() != "ecr-password":
                raise Refused("login failed: no password on stdin", 1)
            status = 0
        else:
            handler = {"aws": _aws, "docker": _docker, "pulumi": _pulumi, "gh": _gh}[tool]
            status = handler(argv, account, entry)
    except Refused as refused:
        print(f"{tool}: {refused}", file=sys.stderr)
        entry["refused"] = str(refused)
        status = refused.status
    (state_dir / "account.json").write_text(json.dumps(account))
    with (state_dir / "calls.jsonl").open("a") as log:
        log.write(json.dumps(entry) + "\n")
    return status


def _option(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _options(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == name]


def _role() -> str:
    role = os.environ.get(ROLE_VARIABLE)
    if not role:
        raise Refused("Unable to locate credentials", 253)
    return role


def _may_write(stack: str) -> None:
    """The bootstrap's deploy role of a stack writes that stack only; preview roles write nothing."""
    role = _role()
    if not role.endswith(f"/prethrift-{stack}-deploy"):
        raise Refused(f"AccessDenied: {role} may not change {stack}")


def _may_read(stack: str) -> None:
    role = _role()
    if f"/prethrift-{stack}-" not in role:
        raise Refused(f"AccessDenied: {role} may not read {stack}")


def _repository(account: dict[str, Any], name: str) -> dict[str, str]:
    if name not in account["repositories"]:
        raise Refused(f"RepositoryNotFoundException: The repository with name '{name}' does not exist", 254)
    images: dict[str, str] = account["repositories"][name]
    return images


def _split_image(ref: str) -> tuple[str, str | None, str | None]:
    """`host/repo[:tag][@digest]` as (repo, tag, digest)."""
    match = re.fullmatch(r"[^/]+/(?P<repo>[^:@]+)(?::(?P<tag>[^@]+))?(?:@(?P<digest>.+))?", ref)
    if not match:
        raise Refused(f"invalid reference format: {ref}", 1)
    return match["repo"], match["tag"], match["digest"]


def _aws(argv: list[str], account: dict[str, Any], entry: dict[str, Any]) -> int:
    _role()
    command = argv[:2]
    if command == ["ecr", "get-login-password"]:
        print("ecr-password")
    elif command == ["ecr", "describe-repositories"]:
        name = str(_option(argv, "--repository-names"))
        _repository(account, name)
        print(f"{REGISTRY}/{name}")
    elif command == ["ecr", "describe-images"]:
        images = _repository(account, str(_option(argv, "--repository-name")))
        tag = str(_option(argv, "--image-ids")).removeprefix("imageTag=")
        if tag not in images:
            raise Refused(f"ImageNotFoundException: The image with imageTag={tag} does not exist", 254)
        print(images[tag])
    elif command == ["s3", "cp"]:
        source, target = argv[2], argv[3]
        bucket = target.removeprefix("s3://").split("/", 1)[0]
        owners = [s for s, d in account["stacks"].items() if d["outputs"].get("images_bucket") == bucket]
        if not owners:
            raise Refused(f"NoSuchBucket: {bucket}", 1)
        # (Mocks name every stack's bucket alike: any stack that owns it will do.)
        if not any(_role().endswith(f"/prethrift-{owner}-deploy") for owner in owners):
            _may_write(owners[0])
        account["objects"][target] = json.loads(Path(source).read_text())
    else:
        raise Refused(f"the stand-in does not know `aws {' '.join(argv)}`", 2)
    return 0


def _docker(argv: list[str], account: dict[str, Any], entry: dict[str, Any]) -> int:
    if argv[:2] == ["buildx", "build"]:
        ref = str(_option(argv, "--tag"))
        repo, tag, _ = _split_image(ref)
        _may_write(repo.removeprefix("prethrift-"))
        images = _repository(account, repo)
        if "--push" not in argv or tag is None:
            raise Refused("the image must be pushed, by tag", 1)
        if tag in images:
            raise Refused(f"tag invalid: {tag} already exists in {repo} and tags are immutable", 1)
        build_args = sorted(_options(argv, "--build-arg"))
        digest = "sha256:" + hashlib.sha256(json.dumps([ref, build_args]).encode()).hexdigest()
        images[tag] = digest
        entry["pushed"] = {"ref": ref, "digest": digest, "build_args": build_args}
        metadata = _option(argv, "--metadata-file")
        if metadata:
            Path(metadata).write_text(json.dumps({"containerimage.digest": digest}))
        return 0
    if argv[:3] == ["buildx", "imagetools", "create"]:
        target = str(_option(argv, "--tag"))
        source_repo, _, source_digest = _split_image(argv[-1])
        if source_digest not in _repository(account, source_repo).values():
            raise Refused(f"{argv[-1]}: not found", 1)
        repo, tag, _ = _split_image(target)
        _may_write(repo.removeprefix("prethrift-"))
        images = _repository(account, repo)
        if tag is None or tag in images:
            raise Refused(f"tag invalid: {tag} already exists in {repo}", 1)
        images[tag] = str(source_digest)
        entry["copied"] = {"ref": target, "digest": source_digest}
        return 0
    if argv[:3] == ["buildx", "imagetools", "inspect"]:
        repo, tag, _ = _split_image(argv[3])
        images = _repository(account, repo)
        if tag not in images:
            raise Refused(f"{argv[3]}: not found", 1)
        print(json.dumps({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": images[tag]}))
        return 0
    raise Refused(f"the stand-in does not know `docker {' '.join(argv)}`", 2)


def _gh(argv: list[str], account: dict[str, Any], entry: dict[str, Any]) -> int:
    if not os.environ.get("GH_TOKEN"):
        raise Refused("gh: To use GitHub CLI in a GitHub Actions workflow, set the GH_TOKEN variable", 4)
    comments: list[dict[str, Any]] = account["comments"]
    if argv[:2] == ["pr", "comment"]:
        body = Path(str(_option(argv, "--body-file"))).read_text()
        comments.append({"id": len(comments) + 1, "pr": argv[2], "body": body})
        return 0
    if argv[0] == "api" and "--method" not in argv:
        expression = _option(argv, "--jq") or ""
        marker = re.search(r'startswith\("([^"]+)"\)', expression)
        pr = re.search(r"issues/(\d+)/comments", argv[1])
        for comment in comments:
            if marker and pr and comment["pr"] == pr[1] and comment["body"].startswith(marker[1]):
                print(comment["id"])
        return 0
    if argv[0] == "api" and _option(argv, "--method") == "PATCH":
        comment_id = int(argv[-3].rsplit("/", 1)[-1]) if argv[-2] == "-F" else 0
        body_file = argv[-1].removeprefix("body=@")
        for comment in comments:
            if comment["id"] == comment_id:
                comment["body"] = Path(body_file).read_text()
                return 0
        raise Refused("HTTP 404: Not Found", 1)
    raise Refused(f"the stand-in does not know `gh {' '.join(argv)}`", 2)


# How the Pulumi engine hands resources to the policy pack, run in the pack's own virtualenv.
_POLICY_RUN = """
import json, sys
sys.path.insert(0, sys.argv[3])
from infra.policy.offline import evaluate
record = json.load(open(sys.argv[1]))
config = json.load(open(sys.argv[2])) if sys.argv[2] else {}
found = evaluate(record, config)
for v in found:
    print(f"{v.level}: {v.policy}: {v.message}")
sys.exit(1 if any(v.level == "mandatory" for v in found) else 0)
"""


def _virtualenv_python(project_file: Path) -> Path:
    """The interpreter the Pulumi CLI runs a Python project with (its `virtualenv` option)."""
    project = yaml.safe_load(project_file.read_text())
    venv = project["runtime"]["options"]["virtualenv"]
    # Not resolved: the link itself is what makes it the virtualenv's interpreter.
    python = Path(os.path.normpath(project_file.parent / venv / "bin" / "python"))
    if not python.exists():
        raise Refused(
            f"{project_file.name}: the 'virtualenv' option is set to {venv!r}, but it does not exist; "
            "create it and install the program's dependencies"
        )
    return python


def _images(record: dict[str, Any]) -> dict[str, list[str]]:
    tasks = [r for r in record["resources"] if r["type"] == "aws:ecs/taskDefinition:TaskDefinition"]
    return {t["name"]: [c["image"] for c in json.loads(t["inputs"]["containerDefinitions"])] for t in tasks}


def _pulumi(argv: list[str], account: dict[str, Any], entry: dict[str, Any]) -> int:
    if not os.environ.get("PULUMI_BACKEND_URL"):
        raise Refused("no backend: set PULUMI_BACKEND_URL or run `pulumi login`")
    stack = str(_option(argv, "--stack"))
    _may_read(stack)
    if argv[:2] == ["stack", "output"]:
        outputs = account["stacks"].get(stack, {}).get("outputs")
        if outputs is None:
            raise Refused(f"no stack named '{stack}' found")
        if argv[2] not in outputs:
            raise Refused(f"current stack does not have output property '{argv[2]}'")
        print(outputs[argv[2]])
        return 0
    command = argv[0]
    if command not in ("preview", "up"):
        raise Refused(f"the stand-in does not know `pulumi {' '.join(argv)}`", 2)
    if command == "up":
        _may_write(stack)
    root = Path.cwd()
    python = _virtualenv_python(root / "Pulumi.yaml")
    config = dict(item.split("=", 1) for item in _options(argv, "--config"))
    entry["config"] = config
    sets = [f"--set={key}={json.dumps(value)}" for key, value in config.items()]
    done = subprocess.run(
        [str(python), "-m", "infra.mocks", stack, *sets], cwd=root, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise Refused(f"the program failed:\n{done.stderr[-3000:]}")
    record: dict[str, Any] = json.loads(done.stdout)
    record_file = root / f".pulumi-{stack}-record.json"
    record_file.write_text(json.dumps(record))
    packs = _options(argv, "--policy-pack")
    pack_configs = _options(argv, "--policy-pack-config") + [""] * len(packs)
    for pack, pack_config in zip(packs, pack_configs, strict=False):
        pack_python = _virtualenv_python(root / pack / "PulumiPolicy.yaml")
        checked = subprocess.run(
            [str(pack_python), "-c", _POLICY_RUN, str(record_file), pack_config, str(root)],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
        if checked.returncode != 0:
            raise Refused(f"policy pack {pack}:\n{checked.stdout}{checked.stderr[-3000:]}")
    record_file.unlink()
    # What AWS itself checks: the repository the program reads exists (an invoke, at preview
    # too), and at `up` every image a task definition names was pushed.
    repository_url = str(record["outputs"]["repository_url"])
    _repository(account, repository_url.split("/", 1)[1])
    images = _images(record)
    deployed = account["stacks"].get(stack)
    before = deployed["images"] if deployed else {}
    entry["changed_tasks"] = sorted(name for name, refs in images.items() if before.get(name) != refs)
    if command == "up":
        for refs in images.values():
            for ref in refs:
                repo, tag, digest = _split_image(ref)
                if not ref.startswith(REGISTRY):
                    continue
                pushed = _repository(account, repo)
                if tag not in pushed or (digest and pushed[tag] != digest):
                    raise Refused(f"CannotPullContainerError: {ref} was never pushed")
        outputs = dict(record["outputs"])
        # The stack's public URL answers from the test's stand-in for the service behind the ALB.
        entry["url"] = outputs["url"]
        outputs["url"] = account["edge_url"]
        account["stacks"][stack] = {"outputs": outputs, "images": images}
    else:
        outputs = (deployed or {}).get("outputs", {})
    print(json.dumps(outputs))
    return 0
