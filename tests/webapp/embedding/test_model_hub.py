"""Loading hub weights on a machine that cannot reach the model hub: decided at once, not after
huggingface_hub's retries; cached weights still load; `prethrift worker` still fails clearly.

Each case runs in a subprocess, because huggingface_hub reads HF_ENDPOINT and HF_HOME when it is
imported. The hub is never contacted: HF_ENDPOINT names a closed loopback port or a host under
the reserved `.invalid` top-level domain (RFC 6761), which no resolver answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import open_clip
import pytest
import torch

from tests.webapp.conftest import service_env
from webapp.adapters.cache import free_port
from webapp.config import Settings
from webapp.embedding.embedder import ClipModel

# The decision is one failed HEAD request plus a look in the local cache: a fraction of a second.
# The bound is the one the requirement names, and leaves room for a loaded machine.
DECISION_LIMIT_S = 3.0

LOAD = """
import json, sys, time
import open_clip  # imported before the clock starts: only the decision is measured
from webapp.config import ClipSettings
from webapp.embedding.embedder import ModelLoadError, load_clip

register = sys.argv[3] if len(sys.argv) > 3 else ""
if register:  # a hub tag for the tiny test model, whose weights the test put in the cache
    open_clip.pretrained._PRETRAINED["prethrift-tiny"] = {
        "cached": open_clip.pretrained._pcfg(hf_hub=register + "/")
    }
started = time.perf_counter()
try:
    clip = load_clip(ClipSettings(model=sys.argv[1], pretrained=sys.argv[2], text_precision="fp32"))
except ModelLoadError as error:
    outcome = {"error": str(error)}
else:
    outcome = {"random_weights": clip.random_weights, "vector": clip.encode_texts(["red dress"])[0].tolist()}
outcome["seconds"] = time.perf_counter() - started
print(json.dumps(outcome))
"""


def _offline_env(base: dict[str, str], tmp_path: Path, endpoint: str) -> dict[str, str]:
    """`base` with the hub at `endpoint`, an empty cache, and huggingface_hub's offline mode unset."""
    env = {k: v for k, v in base.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf"))
    return env


def _load(env: dict[str, str], *args: str) -> tuple[dict[str, object], str]:
    result = subprocess.run(
        [sys.executable, "-c", LOAD, *args], env=env, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr
    *log, last = result.stdout.strip().splitlines()  # structlog writes to stdout by default
    outcome: dict[str, object] = json.loads(last)
    return outcome, "\n".join(log) + result.stderr


@pytest.mark.parametrize("endpoint", ["closed-port", "http://prethrift-hub.invalid"])
def test_unreachable_hub_is_decided_at_once(tmp_path: Path, endpoint: str) -> None:
    if endpoint == "closed-port":
        endpoint = f"http://127.0.0.1:{free_port()}"
    outcome, log = _load(_offline_env(dict(os.environ), tmp_path, endpoint), "ViT-B-32", "laion2b_s34b_b79k")

    seconds = outcome["seconds"]
    print(f"hub {endpoint}: model load gave up after {seconds:.2f} s")
    assert isinstance(seconds, float) and seconds < DECISION_LIMIT_S, log
    message = str(outcome["error"])
    assert f"the model hub {endpoint} cannot be reached" in message
    assert "PRETHRIFT_CLIP_PRETRAINED" in message and "'none'" in message  # the way on, as before
    assert "model hub unreachable" in log and "Retrying" not in log


def test_unreachable_hub_still_loads_cached_weights(tmp_path: Path, tiny_clip: ClipModel) -> None:
    # (tiny_clip: the tiny model's config is registered with open_clip by loading it)
    torch.manual_seed(7)
    original = open_clip.create_model("prethrift-tiny", pretrained=None)
    original.eval()
    snapshot = tmp_path / "hf" / "hub" / "models--prethrift--tiny-cached"
    revision = "0123456789abcdef0123456789abcdef01234567"
    (snapshot / "refs").mkdir(parents=True)
    (snapshot / "refs" / "main").write_text(revision)
    (snapshot / "snapshots" / revision).mkdir(parents=True)
    torch.save(original.state_dict(), snapshot / "snapshots" / revision / "open_clip_pytorch_model.bin")

    endpoint = f"http://127.0.0.1:{free_port()}"
    outcome, log = _load(
        _offline_env(dict(os.environ), tmp_path, endpoint), "prethrift-tiny", "cached", "prethrift/tiny-cached"
    )

    assert "error" not in outcome, outcome
    assert outcome["random_weights"] is False
    tokens = open_clip.get_tokenizer("prethrift-tiny")(["red dress"])
    with torch.inference_mode():
        expected = original.encode_text(tokens, normalize=True)[0]
    got = torch.tensor(outcome["vector"])
    assert torch.allclose(got, expected, atol=1e-5), "the cached weights were not the ones loaded"
    assert "model hub unreachable" in log and "Retrying" not in log


def test_worker_without_the_hub_fails_with_directions(settings: Settings, tmp_path: Path) -> None:
    env = _offline_env(
        service_env(settings, PRETHRIFT_CLIP_MODEL="ViT-B-32", PRETHRIFT_CLIP_PRETRAINED="laion2b_s34b_b79k"),
        tmp_path,
        f"http://127.0.0.1:{free_port()}",
    )
    result = subprocess.run(
        [sys.executable, "-m", "webapp.cli", "worker"], env=env, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 1, result.stderr
    assert "Error: Could not load CLIP model 'ViT-B-32' with weights 'laion2b_s34b_b79k'" in result.stderr
    assert "cannot be reached" in result.stderr and "PRETHRIFT_CLIP_PRETRAINED" in result.stderr
