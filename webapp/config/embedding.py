"""Settings of the model and of the embedding worker."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ClipSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRETHRIFT_CLIP_", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    model: str = "ViT-B-32"
    # An open_clip pretrained tag, a path to a checkpoint file, or "none" for random weights.
    pretrained: str = "laion2b_s34b_b79k"
    device: str = "cpu"
    threads: int | None = Field(default=None, ge=1)
    # Cross-request batching of queries: one forward pass for many (bench/README.md measures the
    # served throughput against per-request encoding).
    batching: bool = True
    truncate: bool = True
    max_batch: int = Field(default=64, ge=1, le=1024)
    max_wait_ms: float = Field(default=2.0, ge=0)
    max_queue: int = Field(default=1024, ge=1)
    deadline_s: float = Field(default=10.0, gt=0)
    # A text batch stops waiting for more queries once it holds what the model runs within this
    # (the cap follows the measured time per batch); queries already queued behind a busy model
    # all go in the next batch, up to max_batch. 0 turns the limit off.
    batch_budget_ms: float = Field(default=40.0, ge=0)
    # Number format of the text tower's weights on the CPU. "bf16" halves the bytes each matrix
    # product reads and, on cores with bfloat16 matrix instructions (Intel AMX, AVX512-BF16, Arm
    # BF16), runs them natively; query vectors then stay within the cosine the tests hold them
    # to (tests/webapp/embedding/test_text_precision.py). "auto": bf16 where the CPU has such
    # instructions, float32 elsewhere (on a CPU without them bfloat16 is emulated and slower).
    # Images stay float32 on the CPU (stored vectors are compared across model loads) and fp16
    # autocast on CUDA.
    text_precision: Literal["auto", "fp32", "bf16"] = "auto"


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRETHRIFT_WORKER_", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    # Run the embedding worker inside the API process (development) or as `prethrift worker`.
    inline: bool = True
    batch_size: int = Field(default=16, ge=1, le=512)
    # Batch size when the model runs on a GPU (a forward pass of 256 keeps one busy).
    gpu_batch_size: int = Field(default=256, ge=1, le=4096)
    max_attempts: int = Field(default=5, ge=1)
    backoff_base_s: float = Field(default=2.0, ge=0)
    poll_interval_s: float = Field(default=2.0, gt=0)
    # A claimed batch is leased for this long: the attempt is committed before the work, and a
    # worker that dies holding it leaves the jobs to be claimed again once the lease ends.
    lease_s: float = Field(default=300.0, ge=0.1)
    # Processes decoding photos on the CPU; 0 means one per core.
    decode_processes: int = Field(default=0, ge=0)
    # How long one photo may take to decode; past it the process is killed and the photo's job
    # failed with that reason (uploads are checked for such files; older photos were not).
    decode_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    # Batches held between pipeline stages (claim, decode, encode, commit).
    pipeline_depth: int = Field(default=2, ge=1, le=16)
    # `prethrift worker` serves its Prometheus metrics (queue depth, embeddings) on this loopback
    # port when set, for the task's collector to scrape; the API serves its own at /metrics.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
