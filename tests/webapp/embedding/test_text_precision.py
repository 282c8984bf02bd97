"""The text tower in bfloat16 on CPUs built for it: the same queries, the image tower untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.webapp.conftest import photo
from tests.webapp.embedding.test_embedder import QUERIES
from webapp.config import ClipSettings
from webapp.embedding.embedder import cpu_has_bf16, load_clip, text_dtype_for
from webapp.embedding.images import decode_rgb

SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
SKYLAKE = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"
GRAVITON2 = "processor\t: 0\nFeatures\t: fp asimd atomics dotprod\n"


def test_bf16_is_chosen_only_on_cpus_with_bf16_matrix_instructions() -> None:
    assert cpu_has_bf16(SAPPHIRE_RAPIDS) and cpu_has_bf16(GRAVITON3)
    assert not cpu_has_bf16(SKYLAKE) and not cpu_has_bf16(GRAVITON2) and not cpu_has_bf16("")
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert text_dtype_for(ClipSettings(text_precision="bf16"), cpu) == torch.bfloat16
    assert text_dtype_for(ClipSettings(text_precision="fp32"), cpu) == torch.float32
    # On a GPU the tower is left as loaded, whatever the setting.
    assert text_dtype_for(ClipSettings(text_precision="bf16"), cuda) == torch.float32
    assert text_dtype_for(ClipSettings(), cpu) == (torch.bfloat16 if cpu_has_bf16() else torch.float32)


@pytest.mark.parametrize("model", ["prethrift-tiny", "ViT-B-32"])
def test_bf16_text_tower_gives_the_same_queries_and_leaves_images_alone(model: str) -> None:
    exact = load_clip(ClipSettings(model=model, pretrained="none", text_precision="fp32"))
    half = load_clip(ClipSettings(model=model, pretrained="none", text_precision="bf16"))
    assert next(half.model.transformer.parameters()).dtype == torch.bfloat16
    assert next(half.model.visual.parameters()).dtype == torch.float32

    want = exact.encode_texts(QUERIES)
    for truncate in (True, False):
        got = half.encode_texts(QUERIES, truncate=truncate)
        assert got.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        cosine = (got * want).sum(axis=1)
        assert cosine.min() > 0.999, cosine
    # Each query still finds the same nearest neighbour among the others' vectors.
    got = half.encode_texts(QUERIES)
    assert ((got @ want.T).argmax(axis=1) == (want @ want.T).argmax(axis=1)).all()

    images = [decode_rgb(photo(1)), decode_rgb(photo(2))]
    np.testing.assert_array_equal(half.encode_images(images), exact.encode_images(images))
