"""Run a GitHub Actions workflow of this repository the way GitHub does, here, up to the cloud
boundary (tests/infra/test_workflows_run.py).

Jobs run in `needs` order with their `if:`, matrix, environment and outputs; steps run in order,
`${{ }}` expressions evaluated against the run's contexts, `run:` steps in bash with GitHub's
flags (`-eo pipefail`) and its files (`$GITHUB_OUTPUT`, `$GITHUB_STEP_SUMMARY`). The actions the
workflows use are played by what they do to a runner: checkout copies this working tree (a git
repository with `origin/<base>`), setup-python puts a fresh interpreter first on PATH,
configure-aws-credentials hands credentials for its role to later steps, pulumi/actions installs
the CLI and runs its command. `pulumi`, `aws`, `docker` and `gh` are recording stand-ins
(tests/infra/cloud_standins.py). Nothing is installed for a job but what its own steps install.

Installs are real (`pip` from the locks) and cached: a job's workspace and interpreter live under
a folder keyed by its install commands and the lock files, so a second run only re-checks them."""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infra.bootstrap.policies import trusted_subjects
from tests.infra import cloud_standins

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
CACHE = Path(os.environ.get("PRETHRIFT_WORKFLOW_CACHE", Path.home() / ".cache" / "prethrift-workflows"))
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)
INSTALL = re.compile(r"\bpip install\b|-m venv\b")
KEEP_CACHED = 6


class JobFailed(Exception):
    """A step failed: the job ends there, as on GitHub."""


# --- expressions --------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>\d+(?:\.\d+)?)|(?P<op>==|!=|<=|>=|&&|\|\||[!<>()\[\].,])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    found, pos, text = [], 0, text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ValueError(f"cannot read expression {text!r} at {pos}")
        kind = match.lastgroup or ""
        found.append((kind, match[kind]))
        pos = match.end()
    return found


def _text(value: Any) -> str:
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()  # GitHub compares strings case-insensitively
    if isinstance(a, int | float) and isinstance(b, str):
        return _text(a) == b
    if isinstance(b, int | float) and isinstance(a, str):
        return _text(b) == a
    return bool(a == b)


class _Parser:
    """GitHub's expression grammar: literals, contexts, `.`/`[]`, `!`, comparisons, `&&`, `||`
    (which return an operand, as GitHub's do), and the functions these workflows call."""

    def __init__(self, text: str, contexts: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]]):
        self.tokens = _tokens(text)
        self.pos = 0
        self.contexts = contexts
        self.functions = functions

    def parse(self) -> Any:
        value = self._or()
        if self.pos != len(self.tokens):
            raise ValueError(f"unexpected {self.tokens[self.pos]}")
        return value

    def _peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def _take(self, expected: str | None = None) -> tuple[str, str]:
        token = self.tokens[self.pos]
        if expected is not None and token[1] != expected:
            raise ValueError(f"expected {expected}, found {token[1]}")
        self.pos += 1
        return token

    def _or(self) -> Any:
        value = self._and()
        while self._peek() == "||":
            self._take()
            right = self._and()
            value = value if value else right
        return value

    def _and(self) -> Any:
        value = self._compare()
        while self._peek() == "&&":
            self._take()
            right = self._compare()
            value = right if value else value
        return value

    def _compare(self) -> Any:
        value = self._unary()
        op = self._peek()
        if op in ("==", "!=", "<", ">", "<=", ">="):
            self._take()
            right = self._unary()
            if op == "==":
                return _equal(value, right)
            if op == "!=":
                return not _equal(value, right)
            order = {"<": value < right, ">": value > right, "<=": value <= right, ">=": value >= right}
            return bool(order[op])
        return value

    def _unary(self) -> Any:
        if self._peek() == "!":
            self._take()
            return not self._unary()
        return self._postfix()

    def _postfix(self) -> Any:
        value = self._primary()
        while self._peek() in (".", "["):
            if self._take()[1] == ".":
                key: Any = self._take()[1]
            else:
                key = self._or()
                self._take("]")
            value = value.get(key) if isinstance(value, Mapping) else None
        return value

    def _primary(self) -> Any:
        kind, text = self._take()
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return float(text) if "." in text else int(text)
        if text == "(":
            value = self._or()
            self._take(")")
            return value
        if text in ("true", "false"):
            return text == "true"
        if text == "null":
            return None
        if self._peek() == "(":
            self._take()
            args = []
            while self._peek() != ")":
                args.append(self._or())
                if self._peek() == ",":
                    self._take()
            self._take(")")
            return self.functions[text.lower()](*args)
        return self.contexts.get(text)


def _format(template: str, *args: Any) -> str:
    return re.sub(r"\{(\d+)\}", lambda m: _text(args[int(m[1])]), template)


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Event:
    """What started the run: the `github` context's event and the variables it sees."""

    name: str
    payload: dict[str, Any] = field(default_factory=dict)
    sha: str = "c0ffee" * 6 + "c0ff"
    ref: str = "refs/heads/main"
    base_ref: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepResult:
    name: str
    outputs: dict[str, str]
    log: str
    seconds: float = 0.0


@dataclass
class JobResult:
    name: str
    result: str  # success, failure, skipped
    outputs: dict[str, str] = field(default_factory=dict)
    steps: list[StepResult] = field(default_factory=list)
    summary: str = ""
    error: str = ""
    environment: str | None = None
    concurrency: str | None = None


REPOSITORY = "prethrift/prethrift"
VARIABLES = {
    "PULUMI_BACKEND_URL": "s3://prethrift-pulumi-state-123456789012",
    **{
        f"AWS_{stack.upper()}_{kind.upper()}_ROLE_ARN": f"arn:aws:iam::{cloud_standins.ACCOUNT_ID}:role/"
        f"prethrift-{stack}-{kind}"
        for stack in ("dev", "prod")
        for kind in ("deploy", "preview")
    },
}


class Runner:
    """One workflow run against the fake account in `state_dir`."""

    def __init__(
        self,
        workflow: str,
        event: Event,
        state_dir: Path,
        workdir: Path,
        *,
        edit: Callable[[dict[str, Any]], None] | None = None,
        files: Mapping[str, str] | None = None,
    ) -> None:
        self.path = WORKFLOWS / workflow
        self.data: dict[str, Any] = yaml.safe_load(self.path.read_text())
        self.environment: str | None = None
        """The GitHub environment of the job running now (its OIDC token names it)."""
        if edit is not None:
            edit(self.data)
        self.event = event
        self.state_dir = state_dir
        self.workdir = workdir
        self.files = dict(files or {})
        self.jobs: dict[str, JobResult] = {}
        tools = workdir / "tools"
        for tool in ("aws", "docker", "gh"):
            cloud_standins.write_script(tools / "runner", tool, state_dir)
        cloud_standins.write_script(tools / "pulumi", "pulumi", state_dir)
        self.runner_bin = tools / "runner"
        self.pulumi_bin = tools / "pulumi"

    # contexts
    def github(self) -> dict[str, Any]:
        return {
            "event_name": self.event.name,
            "event": self.event.payload,
            "sha": self.event.sha,
            "ref": self.event.ref,
            "base_ref": self.event.base_ref,
            "repository": REPOSITORY,
            "workflow": self.data.get("name"),
            "token": "ghs_job_token",
        }

    def evaluate(self, expression: str, contexts: Mapping[str, Any], functions: Mapping[str, Any]) -> Any:
        return _Parser(expression, contexts, functions).parse()

    def substitute(self, value: Any, contexts: Mapping[str, Any], functions: Mapping[str, Any]) -> Any:
        if isinstance(value, dict):
            return {k: self.substitute(v, contexts, functions) for k, v in value.items()}
        if not isinstance(value, str):
            return value
        return re.sub(
            r"\$\{\{(.*?)\}\}", lambda m: _text(self.evaluate(m[1], contexts, functions)), value, flags=re.S
        )

    def condition(self, expression: Any, contexts: Mapping[str, Any], functions: Mapping[str, Any]) -> bool:
        if expression is None:
            return bool(functions["success"]())
        if isinstance(expression, bool):
            return expression
        text = str(expression).strip()
        if text.startswith("${{") and text.endswith("}}"):
            text = text[3:-2]
        if not re.search(r"\b(success|failure|always|cancelled)\(", text):
            text = f"success() && ({text})"
        return bool(self.evaluate(text, contexts, functions))

    def run(
        self, only: set[str] | None = None, needs: Mapping[str, JobResult] | None = None
    ) -> dict[str, JobResult]:
        """Every job (or those in `only`, with `needs` standing for the jobs they need)."""
        self.jobs = dict(needs or {})
        pending = {k: v for k, v in self.data["jobs"].items() if only is None or k in only}
        while pending:
            ready = [k for k, j in pending.items() if all(n in self.jobs for n in _needs(j))]
            if not ready:
                raise RuntimeError(f"jobs wait on each other: {sorted(pending)}")
            for name in ready:
                self.jobs[name] = self._job(name, pending.pop(name))
        return self.jobs

    def _job(self, name: str, job: dict[str, Any]) -> JobResult:
        needed = {n: self.jobs[n] for n in _needs(job)}
        needs_ctx = {n: {"result": r.result, "outputs": r.outputs} for n, r in needed.items()}
        base = {"github": self.github(), "vars": VARIABLES, "inputs": self.event.inputs, "needs": needs_ctx}
        functions = self._functions(lambda: all(r.result == "success" for r in needed.values()))
        if not self.condition(job.get("if"), base, functions):
            return JobResult(name, "skipped")
        if "uses" in job:
            return self._reusable(name, job)
        matrix = job.get("strategy", {}).get("matrix")
        combos = _matrix(matrix) if matrix else [{}]
        results = [self._job_once(name, job, {**base, "matrix": combo}, functions) for combo in combos]
        failed = [r for r in results if r.result != "success"]
        merged = failed[0] if failed else results[-1]
        if len(results) > 1:
            merged.name = name
            merged.summary = "".join(r.summary for r in results)
            merged.steps = [s for r in results for s in r.steps]
        return merged

    def _functions(self, success: Callable[[], bool]) -> dict[str, Callable[..., Any]]:
        return {
            "success": success,
            "failure": lambda: not success(),
            "always": lambda: True,
            "cancelled": lambda: False,
            "format": _format,
            "contains": lambda a, b: (
                (_text(b).lower() in _text(a).lower()) if isinstance(a, str) else b in (a or [])
            ),
            "startswith": lambda a, b: _text(a).lower().startswith(_text(b).lower()),
            "endswith": lambda a, b: _text(a).lower().endswith(_text(b).lower()),
            "tojson": lambda a: json.dumps(a),
            "fromjson": lambda a: json.loads(a),
        }

    def _reusable(self, name: str, job: dict[str, Any]) -> JobResult:
        """A called workflow (ci.yml): its own test checks what it runs; here, that it exists."""
        path = REPO / str(job["uses"]).removeprefix("./")
        called = yaml.safe_load(path.read_text())
        if "workflow_call" not in called[True]:
            return JobResult(name, "failure", error=f"{path.name} is not callable (no workflow_call)")
        return JobResult(name, "success")

    def _job_once(
        self, name: str, job: dict[str, Any], contexts: dict[str, Any], functions: dict[str, Callable[..., Any]]
    ) -> JobResult:
        key = _install_key(job)
        with _cached(f"job-{key}") as home:
            return self._steps(name, job, contexts, functions, home)

    def _steps(
        self,
        name: str,
        job: dict[str, Any],
        contexts: dict[str, Any],
        functions: dict[str, Callable[..., Any]],
        home: Path,
    ) -> JobResult:
        workspace = home / "workspace"
        # A job that runs in a cached home another job with the same installs used starts with
        # none of that job's files: what it needs it must check out itself.
        _empty_workspace(workspace)
        temp = self.workdir / "runner-temp"
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir(parents=True)
        summary_file = temp / "step_summary.md"
        summary_file.write_text("")
        steps_ctx: dict[str, Any] = {}
        contexts = {**contexts, "steps": steps_ctx}
        env: dict[str, str] = {
            "PATH": os.pathsep.join([str(self.runner_bin), "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_SHA": self.event.sha,
            "GITHUB_REF": self.event.ref,
            "GITHUB_REPOSITORY": REPOSITORY,
            "GITHUB_EVENT_NAME": self.event.name,
            "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_STEP_SUMMARY": str(summary_file),
            "RUNNER_TEMP": str(temp),
            # pip's own settings on this machine (where wheels are found); a runner has PyPI.
            **{k: v for k, v in os.environ.items() if k.startswith("PIP_")},
        }
        for source in (self.data.get("env") or {}, job.get("env") or {}):
            env.update({k: _text(self.substitute(v, contexts, functions)) for k, v in source.items()})
        env_ctx: dict[str, Any] = {}
        contexts["env"] = env_ctx
        result = JobResult(name, "success")
        environment = job.get("environment")
        name = environment.get("name") if isinstance(environment, dict) else environment
        # An expression that evaluates to nothing means no environment (GitHub runs it so too).
        result.environment = _text(self.substitute(name, contexts, functions)) or None if name else None
        self.environment = result.environment
        concurrency = job.get("concurrency")
        group = concurrency.get("group") if isinstance(concurrency, dict) else concurrency
        result.concurrency = self.substitute(group, contexts, functions) if group else None
        ok = True
        for index, step in enumerate(job["steps"]):
            # A failed step ends the job here (no step of these workflows runs on failure()).
            if not self.condition(step.get("if"), contexts, functions):
                continue
            label = step.get("name") or step.get("uses") or f"step {index}"
            env_ctx.clear()
            env_ctx.update(env)
            step_env = {
                k: _text(self.substitute(v, contexts, functions)) for k, v in (step.get("env") or {}).items()
            }
            output_file = temp / f"output-{index}"
            output_file.write_text("")
            run_env = {**env, **step_env, "GITHUB_OUTPUT": str(output_file)}
            started = time.monotonic()
            try:
                if "uses" in step:
                    outputs, log = self._action(step, contexts, functions, run_env, env, home)
                else:
                    script = str(self.substitute(step["run"], contexts, functions))
                    log = self._shell(script, run_env, workspace)
                    outputs = _outputs(output_file.read_text())
            except JobFailed as failed:
                result.result, result.error, ok = "failure", f"{label}: {failed}", False
                break
            result.steps.append(StepResult(label, outputs, log, time.monotonic() - started))
            if step.get("id"):
                steps_ctx[step["id"]] = {"outputs": outputs, "outcome": "success", "conclusion": "success"}
        result.summary = summary_file.read_text()
        if ok:
            contexts["steps"] = steps_ctx
            result.outputs = {
                k: _text(self.substitute(v, contexts, functions)) for k, v in (job.get("outputs") or {}).items()
            }
        return result

    def _shell(self, script: str, env: Mapping[str, str], workspace: Path) -> str:
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
            cwd=workspace,
            env=dict(env),
            capture_output=True,
            text=True,
            check=False,
        )
        log = done.stdout + done.stderr
        if done.returncode != 0:
            raise JobFailed(f"exit {done.returncode}\n{script}\n--- output ---\n{log[-4000:]}")
        return log

    def _action(
        self,
        step: dict[str, Any],
        contexts: dict[str, Any],
        functions: dict[str, Callable[..., Any]],
        run_env: dict[str, str],
        job_env: dict[str, str],
        home: Path,
    ) -> tuple[dict[str, str], str]:
        """What each action the workflows use does to the runner."""
        action = str(step["uses"]).split("@")[0]
        inputs = {k: _text(v) for k, v in self.substitute(step.get("with") or {}, contexts, functions).items()}
        workspace = home / "workspace"
        if action == "actions/checkout":
            _checkout(workspace, self.files, self.event.base_ref or "main")
            return {}, ""
        if action == "actions/setup-python":
            python_dir = home / "python"
            if not (python_dir / "bin" / "python").exists():
                subprocess.run([BASE_PYTHON, "-m", "venv", str(python_dir)], check=True)
            job_env["PATH"] = f"{python_dir / 'bin'}{os.pathsep}{job_env['PATH']}"
            return {}, ""
        if action == "aws-actions/configure-aws-credentials":
            role = inputs.get("role-to-assume", "")
            if not role:
                raise JobFailed("Credentials could not be loaded: role-to-assume is empty")
            if (
                self.event.payload.get("pull_request", {})
                .get("head", {})
                .get("repo", {})
                .get("full_name", REPOSITORY)
                != REPOSITORY
            ):
                raise JobFailed("Could not get ID token: a fork's run gets no OIDC token")
            # The token's subject, as GitHub sets it, must be one the role's trust policy names.
            if self.environment:
                subject = f"environment:{self.environment}"
            elif self.event.name == "pull_request":
                subject = "pull_request"
            else:
                subject = f"ref:{self.event.ref}"
            _, stack, kind = role.rsplit("/", 1)[-1].split("-", 2)
            if subject not in trusted_subjects(kind, "production" if stack == "prod" else stack):
                raise JobFailed(
                    f"Not authorized to perform sts:AssumeRoleWithWebIdentity: {role} does not trust "
                    f"repo:{REPOSITORY}:{subject}"
                )
            job_env.update(
                {
                    cloud_standins.ROLE_VARIABLE: role,
                    "AWS_ACCESS_KEY_ID": "ASIASTANDIN",
                    "AWS_SECRET_ACCESS_KEY": "stand-in",
                    "AWS_SESSION_TOKEN": "stand-in",
                    "AWS_REGION": inputs.get("aws-region", ""),
                }
            )
            return {}, ""
        if action == "pulumi/actions":
            if str(self.pulumi_bin) not in job_env["PATH"]:
                job_env["PATH"] = f"{self.pulumi_bin}{os.pathsep}{job_env['PATH']}"
            run_env["PATH"] = job_env["PATH"]
            command = inputs.get("command")
            if not command:
                return {}, ""
            args = [command, "--stack", inputs["stack-name"]]
            config = yaml.safe_load(inputs.get("config-map") or "{}") or {}
            for key, value in config.items():
                args += ["--config", f"{key}={_text(value['value'])}"]
            packs = (("policyPacks", "--policy-pack"), ("policyPackConfigs", "--policy-pack-config"))
            for option, flag in packs:
                for item in filter(None, inputs.get(option, "").split()):
                    args += [flag, item]
            done = subprocess.run(
                ["pulumi", *args], cwd=workspace, env=run_env, capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                raise JobFailed(f"pulumi {command} failed:\n{done.stderr[-4000:]}")
            outputs = {k: _text(v) for k, v in json.loads(done.stdout.splitlines()[-1]).items()}
            return outputs, done.stdout + done.stderr
        raise JobFailed(f"the runner does not know the action {action}")


def _needs(job: Mapping[str, Any]) -> list[str]:
    needs = job.get("needs") or []
    return [needs] if isinstance(needs, str) else list(needs)


def _matrix(matrix: Mapping[str, Any]) -> list[dict[str, Any]]:
    axes = {k: v for k, v in matrix.items() if k not in ("include", "exclude")}
    combos = [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]
    return (combos if axes else []) + [dict(item) for item in matrix.get("include", [])]


def _outputs(text: str) -> dict[str, str]:
    """`$GITHUB_OUTPUT`: `key=value` lines and `key<<DELIMITER` blocks."""
    outputs: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delimiter = line.split("<<", 1)
            block: list[str] = []
            for item in lines:
                if item == delimiter:
                    break
                block.append(item)
            outputs[key] = "\n".join(block)
        elif "=" in line:
            key, value = line.split("=", 1)
            outputs[key] = value
    return outputs


def _install_key(job: Mapping[str, Any]) -> str:
    """A job's install set: its install commands, the lock files and the interpreter."""
    installs = [s["run"] for s in job.get("steps", []) if "run" in s and INSTALL.search(s["run"])]
    digest = hashlib.sha256(json.dumps([installs, BASE_PYTHON, sys.version]).encode())
    for lock in sorted(REPO.glob("requirements*.lock")):
        digest.update(lock.read_bytes())
    return digest.hexdigest()[:16]


@contextmanager
def _cached(name: str) -> Iterator[Path]:
    """A folder kept between runs (locked while in use); the oldest beyond KEEP_CACHED go."""
    CACHE.mkdir(parents=True, exist_ok=True)
    folder = CACHE / name
    with (CACHE / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        folder.mkdir(exist_ok=True)
        folder.touch()
        yield folder
    others = sorted((p for p in CACHE.glob("job-*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in others[:-KEEP_CACHED]:
        with (CACHE / f"{old.name}.lock").open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            shutil.rmtree(old, ignore_errors=True)


def _empty_workspace(workspace: Path) -> None:
    """An empty workspace, as every job's runner starts with; only the job's cached virtualenv
    (what its own install steps made on an earlier run) is kept."""
    workspace.mkdir(parents=True, exist_ok=True)
    for entry in workspace.iterdir():
        if entry.name != ".venv":
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def _checkout(workspace: Path, files: Mapping[str, str], base: str) -> None:
    """This working tree (tracked and new files, as a push would carry them) as a fresh git
    repository whose `origin/<base>` is the same commit."""
    _empty_workspace(workspace)
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        source = REPO / rel
        if not source.is_file():
            continue  # deleted in the working tree
        target = workspace / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    for rel, text in files.items():
        (workspace / rel).write_text(text)
    git = ["git", "-c", "user.name=ci", "-c", "user.email=ci@localhost", "-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "checkout"]):
        subprocess.run([*git, *args], cwd=workspace, check=True, capture_output=True)
    subprocess.run(["git", "update-ref", f"refs/remotes/origin/{base}", "HEAD"], cwd=workspace, check=True)
