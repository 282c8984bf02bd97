"""The model-alone baselines: stock ``encode_text`` one query at a time, in this process.

No HTTP, no database, no cache: the cheapest way anyone could serve the stock model. The
served path's throughput is quoted against it (target: x8), beside the HTTP-vs-HTTP ratio.
The same distinct shopper phrases as the HTTP phases are used (a fresh QueryStream, same seed).
"""

from __future__ import annotations

import gc
import time
from typing import Any

import torch

from bench.load import QueryStream
from webapp.config import ClipSettings
from webapp.embedding.embedder import load_clip


def measure(model: str, seed: int, *, duration_s: float, batch: int = 64) -> dict[str, Any]:
    """q/s of stock per-query encode_text, and of the truncated path at one batch of ``batch``.

    The stock baseline is open_clip as shipped: float32 weights, whatever the app's own
    text_precision; the batched figure is the app's setting (bfloat16 on CPUs built for it).
    """
    clip = load_clip(ClipSettings(model=model, pretrained="none", text_precision="fp32"))
    queries = QueryStream(seed)
    try:
        with torch.inference_mode():
            for _ in range(3):  # warm-up, not measured
                clip.model.encode_text(clip.tokenizer([queries.take()]), normalize=True)
            done = 0
            started = time.perf_counter()
            while time.perf_counter() - started < duration_s:
                clip.model.encode_text(clip.tokenizer([queries.take()]), normalize=True)
                done += 1
            stock_qps = done / (time.perf_counter() - started)
        # For reference: what the model alone reaches truncated and batched, no serving around it.
        del clip
        gc.collect()
        clip = load_clip(ClipSettings(model=model, pretrained="none"))
        clip.encode_texts([queries.take() for _ in range(batch)])
        rounds, started = 0, time.perf_counter()
        while time.perf_counter() - started < duration_s / 2:
            clip.encode_texts([queries.take() for _ in range(batch)])
            rounds += 1
        batched_qps = rounds * batch / (time.perf_counter() - started)
    finally:
        del clip
        gc.collect()
    return {
        "stock_encode_text_qps": round(stock_qps, 1),
        "stock_queries": done,
        f"truncated_batch{batch}_qps": round(batched_qps, 1),
        "torch_threads": torch.get_num_threads(),
    }
