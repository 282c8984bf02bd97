"""The CLIP model: loaded once, kept warm, run off the event loop, batched across requests."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import structlog
import torch
import torch.nn.functional as F
from PIL import Image

from webapp.config import ClipSettings
from webapp.embedding.batcher import MicroBatcher
from webapp.embedding.model_keys import model_key_for
from webapp.embedding.pixels import model_view
from webapp.http.errors import ModelNotReady
from webapp.observability.tracing import tracer

log = structlog.get_logger(__name__)
_tracer = tracer(__name__)

T = TypeVar("T")
R = TypeVar("R")


class ModelLoadError(RuntimeError):
    """The configured weights could not be loaded; the message says how to proceed."""


def _register_bundled_configs() -> None:
    import open_clip

    folder = importlib.resources.files("webapp") / "clip_configs"
    open_clip.add_model_config(Path(str(folder)))


@dataclass
class ClipModel:
    """A loaded open_clip model. Its methods block: call them through Embedder.run."""

    model: Any
    preprocess: Callable[[Image.Image], torch.Tensor]
    tokenizer: Callable[[Sequence[str]], torch.Tensor]
    model_key: str
    dim: int
    device: torch.device
    random_weights: bool = False

    @property
    def can_truncate(self) -> bool:
        # The causal text tower pools at the end-of-text token (the highest id), so positions
        # after the longest query's EOT never influence the result: cutting them is exact.
        return (
            hasattr(self.model, "transformer")
            and getattr(self.model, "text_pool_type", None) == "argmax"
            and hasattr(self.model, "positional_embedding")
        )

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str], *, truncate: bool = True) -> np.ndarray:
        tokens = self.tokenizer(list(texts)).to(self.device)
        if truncate and self.can_truncate:
            features = self._encode_tokens_truncated(tokens)
        else:
            features = self.model.encode_text(tokens)
        # Normalised in float32 whatever the tower's type: unit length is what cosine search assumes.
        return np.asarray(F.normalize(features.float(), dim=-1).cpu().numpy(), dtype=np.float32)

    def _encode_tokens_truncated(self, tokens: torch.Tensor) -> torch.Tensor:
        from open_clip.transformer import text_global_pool

        model = self.model
        length = int(tokens.argmax(dim=-1).max().item()) + 1
        tokens = tokens[:, :length]
        cast_dtype = model.transformer.get_cast_dtype()
        x = model.token_embedding(tokens).to(cast_dtype)
        x = x + model.positional_embedding[:length].to(cast_dtype)
        mask = model.attn_mask
        if mask is not None:
            mask = mask[:length, :length]
        x = model.transformer(x, attn_mask=mask)
        x = model.ln_final(x)
        x = text_global_pool(x, tokens, model.text_pool_type)
        projection = model.text_projection
        if projection is not None:
            x = projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection
        features: torch.Tensor = x
        return features

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        # Extreme strips are cropped first, so the transform's resize stays small (model_view).
        return self.encode_pixels(torch.stack([self.preprocess(model_view(image)) for image in images]))

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """Embed a batch of preprocessed images (N x 3 x H x W); fp16 autocast on CUDA."""
        pixels = pixels.to(self.device, non_blocking=True)
        on_gpu = self.device.type == "cuda"
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=on_gpu):
            features = self.model.encode_image(pixels, normalize=True)
        return np.asarray(features.float().cpu().numpy(), dtype=np.float32)


# One HEAD request to the hub, DNS lookup included, must answer within this. Without the check
# huggingface_hub retries each file five times with backoff before failing, a long wait offline.
HUB_PROBE_TIMEOUT_S = 2.0


def hub_unreachable(endpoint: str, timeout_s: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Why the model hub at ``endpoint`` cannot be reached, or None when it answers at all.

    The request runs in a daemon thread so that the deadline also bounds the DNS lookup
    (``getaddrinfo`` has no timeout of its own). Proxies from the environment apply, as they do
    for the hub client.
    """
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout_s).close()
            outcome.append(None)
        except urllib.error.HTTPError:
            outcome.append(None)  # any HTTP status means the hub is there
        except (OSError, ValueError) as error:  # URLError (DNS, refused, TLS), timeouts, bad URLs
            outcome.append(str(getattr(error, "reason", error)))

    thread = threading.Thread(target=probe, name="hub-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return outcome[0] if outcome else f"no answer within {timeout_s:g} s"


def _needs_hub(settings: ClipSettings) -> bool:
    import open_clip

    if settings.model.startswith("hf-hub:"):
        return True
    pretrained = settings.pretrained
    if pretrained.lower() == "none" or Path(pretrained).is_file():
        return False
    return bool(open_clip.get_pretrained_cfg(settings.model, pretrained).get("hf_hub"))


@contextlib.contextmanager
def _hub_or_local_cache(settings: ClipSettings) -> Iterator[str | None]:
    """Yield None when the hub may be used; when it cannot be reached, yield why and switch
    huggingface_hub to offline mode meanwhile, so cached weights load and missing ones fail at once."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or not _needs_hub(settings):
        yield None
        return
    started = time.perf_counter()
    reason = hub_unreachable(constants.ENDPOINT)
    if reason is None:
        yield None
        return
    log.warning(
        "model hub unreachable: using only weights already in the local cache",
        endpoint=constants.ENDPOINT,
        reason=reason,
        seconds=round(time.perf_counter() - started, 2),
    )
    constants.HF_HUB_OFFLINE = True
    try:
        yield f"the model hub {constants.ENDPOINT} cannot be reached ({reason}) and the weights are not cached"
    finally:
        constants.HF_HUB_OFFLINE = False


def load_clip(settings: ClipSettings) -> ClipModel:
    """Load the configured model; fail with a message that says how to proceed."""
    import open_clip

    _register_bundled_configs()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = torch.device(settings.device)
    pretrained: str | None = settings.pretrained
    random_weights = settings.pretrained.lower() == "none"
    if random_weights:
        pretrained = None
        torch.manual_seed(0)  # the same "random" model on every start, so stored vectors stay valid
    started = time.perf_counter()
    with _hub_or_local_cache(settings) as unreachable:
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                settings.model, pretrained=pretrained, device=device
            )
            tokenizer = open_clip.get_tokenizer(settings.model)
        except Exception as error:  # open_clip raises RuntimeError, OSError, HF hub errors...
            cause = unreachable or str(error)
            raise ModelLoadError(
                f"Could not load CLIP model {settings.model!r} with weights {settings.pretrained!r}: "
                f"{cause}. Without network access, set PRETHRIFT_CLIP_PRETRAINED to a checkpoint "
                "file path (for example one saved by `prethrift export-weights` on a connected "
                "machine), or to 'none' for random weights (search results will be meaningless)."
            ) from error
    model.eval()
    text_dtype = text_dtype_for(settings, device)
    if text_dtype != torch.float32:
        text_dtype = text_tower_to(model, text_dtype)
    with torch.inference_mode():
        probe = model.encode_text(tokenizer(["probe"]).to(device))
    dim = int(probe.shape[-1])
    key = model_key_for(settings)
    if random_weights:
        log.warning(
            "CLIP IS RUNNING WITH RANDOM WEIGHTS: similarities are meaningless; "
            "set PRETHRIFT_CLIP_PRETRAINED to real weights for real search",
            model=settings.model,
        )
    log.info(
        "clip model loaded", model_key=key, dim=dim, text_dtype=str(text_dtype).removeprefix("torch."),
        seconds=round(time.perf_counter() - started, 2),
    )  # fmt: skip
    return ClipModel(model, preprocess, tokenizer, key, dim, device, random_weights)


# CPU flags (Linux /proc/cpuinfo: "flags" on x86, "Features" on Arm) of instructions that multiply
# bfloat16 matrices natively: Intel AMX and AVX512-BF16, Arm's BF16 extension.
BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16", "bf16"})


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively; False where it cannot tell."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return bool(flags & BF16_FLAGS)


def text_dtype_for(settings: ClipSettings, device: torch.device) -> torch.dtype:
    """The text tower's weight type (ClipSettings.text_precision); float32 off the CPU."""
    if device.type != "cpu" or settings.text_precision == "fp32":
        return torch.float32
    if settings.text_precision == "bf16" or cpu_has_bf16():
        return torch.bfloat16
    return torch.float32


def text_tower_to(model: Any, dtype: torch.dtype) -> torch.dtype:
    """Cast the text tower's weights in place (the image tower keeps its own); returns the type
    the tower now has, float32 when the model's text tower is not one this knows."""
    if isinstance(getattr(model, "text", None), torch.nn.Module):  # open_clip's CustomTextCLIP
        model.text.to(dtype)
        return dtype
    if not all(hasattr(model, name) for name in ("transformer", "token_embedding", "ln_final")):
        return torch.float32
    for name in ("transformer", "token_embedding", "ln_final"):
        getattr(model, name).to(dtype)
    model.positional_embedding.data = model.positional_embedding.data.to(dtype)
    projection = model.text_projection
    if isinstance(projection, torch.nn.Module):
        projection.to(dtype)
    elif projection is not None:
        projection.data = projection.data.to(dtype)
    if getattr(model, "attn_mask", None) is not None:
        model.attn_mask = model.attn_mask.to(dtype)  # a buffer: the causal mask, added to scores
    return dtype


# Padded lengths text queries are grouped by: a batch runs to its longest query's end-of-text
# token (ClipModel.can_truncate), so mixing a 70-token query into a batch of 8-token ones would
# cost every one of them the long sequence.
TEXT_BUCKETS = (16, 32, 77)
# A batch of 4 costs each query well under half of running alone (bench/README.md,
# model_alone): the floor under the time-budgeted batch cap.
TEXT_MIN_BATCH = 4
_WORDS = re.compile(r"[^\W\d_]+|\d|[^\w\s]", re.UNICODE)


def text_bucket(text: str) -> int:
    """A cheap upper estimate of a query's token count, rounded up to one of TEXT_BUCKETS.

    CLIP's BPE gives a common English word one token and splits digits and punctuation off;
    long words take about one token per 5 letters. The estimate only groups queries and weighs
    batch cost; a wrong guess costs speed, never exactness.
    """
    tokens = 2  # start and end of text
    for word in _WORDS.findall(text[:400]):
        tokens += 1 + len(word) // 6
        if tokens > TEXT_BUCKETS[-2]:
            return TEXT_BUCKETS[-1]
    return next(b for b in TEXT_BUCKETS if tokens <= b)


def _one(_: object) -> int:
    return 1


class Embedder:
    """Async face of the model. The single place where blocking model work meets the loop."""

    def __init__(self, settings: ClipSettings) -> None:
        self.settings = settings
        self.clip: ClipModel | None = None
        # One thread: torch already uses every core inside an op; two would just contend.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clip")
        self._text: MicroBatcher[str, np.ndarray] | None = None
        self._image: MicroBatcher[Image.Image, np.ndarray] | None = None

    async def run(self, fn: Callable[..., R], *args: Any) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def load(self) -> ClipModel:
        self.clip = await self.run(load_clip, self.settings)
        self._start_batchers(self.clip)
        return self.clip

    def attach(self, clip: ClipModel) -> None:
        """Use an already loaded model (tests, and tools that share one model)."""
        self.clip = clip
        self._start_batchers(clip)

    def _start_batchers(self, clip: ClipModel) -> None:
        s = self.settings
        max_batch = s.max_batch if s.batching else 1
        wait = s.max_wait_ms / 1000 if s.batching else 0.0

        def encode_texts_sync(texts: list[str]) -> np.ndarray:
            return clip.encode_texts(texts, truncate=s.truncate)

        async def encode_texts(texts: list[str]) -> np.ndarray:
            return await self.run(encode_texts_sync, texts)

        async def encode_images(images: list[Image.Image]) -> np.ndarray:
            return await self.run(clip.encode_images, images)

        self._text = MicroBatcher(
            encode_texts,
            max_batch=max_batch,
            max_wait_s=wait,
            max_queue=s.max_queue,
            name="text",
            budget_s=s.batch_budget_ms / 1000 if s.batching and s.batch_budget_ms else None,
            min_batch=TEXT_MIN_BATCH,
            bucket=text_bucket if s.batching and s.truncate else _one,
        )
        self._image = MicroBatcher(
            encode_images,
            max_batch=min(max_batch, 16),
            max_wait_s=wait,
            max_queue=max(1, s.max_queue // 8),
            name="image",
        )
        self._text.start()
        self._image.start()

    @property
    def ready(self) -> bool:
        return self.clip is not None

    @property
    def model(self) -> ClipModel:
        if self.clip is None:
            raise ModelNotReady()
        return self.clip

    async def embed_text(self, text: str) -> np.ndarray:
        if self._text is None:
            raise ModelNotReady()
        return await self._text.submit(text, self.settings.deadline_s)

    async def embed_image(self, image: Image.Image) -> np.ndarray:
        if self._image is None:
            raise ModelNotReady()
        return await self._image.submit(image, self.settings.deadline_s * 3)

    async def embed_images_direct(self, images: list[Image.Image]) -> np.ndarray:
        """Embed a worker batch in one forward pass (the worker batches by itself)."""
        with _tracer.start_as_current_span("embed.forward", attributes={"batch.size": len(images)}):
            return await self.run(self.model.encode_images, images)

    async def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """Embed a worker batch that the decode stage already turned into model input."""
        with _tracer.start_as_current_span("embed.forward", attributes={"batch.size": int(pixels.shape[0])}):
            return await self.run(self.model.encode_pixels, pixels)

    async def close(self) -> None:
        for batcher in (self._text, self._image):
            if batcher is not None:
                await batcher.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)
