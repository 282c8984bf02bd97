"""Worker processes that die by SIGKILL, for test_worker.py.

Run as ``python -m tests.webapp.embedding.crash_worker`` with the test's settings in the environment; it
uses the real worker code. By default its model's forward pass kills the process after claiming
a batch and before committing it. With ``CRASH_ON_IMAGE_KEY`` set it drains the queue like a
real worker and dies only when it reads that one photo (a photo that crashes the process).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Sequence

from webapp.cli.programs import load_settings
from webapp.embedding.embedder import load_clip
from webapp.embedding.worker import EmbeddingWorker
from webapp.runtime import open_services


def die(message: str) -> None:
    print(message, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


async def main() -> None:
    settings = load_settings()
    clip = load_clip(settings.clip)
    poison = os.environ.get("CRASH_ON_IMAGE_KEY")
    if poison is None:

        def die_in_forward(images: Sequence[object]) -> object:
            die(f"claimed {len(images)} jobs; dying before commit")
            raise AssertionError("unreachable")

        clip.encode_pixels = die_in_forward  # type: ignore[method-assign,assignment]
    async with open_services(settings, clip) as services:
        if poison is not None:
            read = services.storage.get

            async def get(key: str) -> bytes:
                if key == poison:
                    die(f"dying on {key}")
                return await read(key)

            services.storage.get = get  # type: ignore[method-assign]
        worker = EmbeddingWorker(services.pool, services.embedder, services.storage, settings.worker)
        if poison is None:
            await worker.process_batch()
        else:
            print(f"embedded {await worker.drain()}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
