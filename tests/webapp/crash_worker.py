"""A worker process that dies by SIGKILL after claiming a batch and before committing it.

Run by test_worker.py as ``python -m tests.webapp.crash_worker`` with the test's settings in
the environment; it uses the real worker code, with a model whose forward pass kills the process.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Sequence

from webapp.config import load_settings
from webapp.embedder import load_clip
from webapp.runtime import open_services
from webapp.worker import EmbeddingWorker


async def main() -> None:
    settings = load_settings()
    clip = load_clip(settings.clip)

    def die(images: Sequence[object]) -> object:
        print(f"claimed {len(images)} jobs; dying before commit", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")

    clip.encode_pixels = die  # type: ignore[method-assign,assignment]
    async with open_services(settings) as services:
        services.embedder.attach(clip)
        worker = EmbeddingWorker(services.pool, services.embedder, services.storage, settings.worker)
        await worker.process_batch()


if __name__ == "__main__":
    asyncio.run(main())
