"""Vector queries against the catalog, for one model."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import numpy as np

from webapp.db import sql_literal, vector_expression


@dataclass(frozen=True)
class Hit:
    id: int
    title: str
    brand: str | None
    category: str | None
    size: str | None
    colour: str | None
    condition: str | None
    price: Decimal
    currency: str
    image_key: str
    score: float

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["price"] = str(self.price)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Hit:
        return cls(**{**data, "price": Decimal(data["price"])})


class VectorQueries:
    """SQL for one model, built once.

    The model key is written into the SQL as a literal, not a parameter: the planner can only
    use a partial index when it can prove the predicate, which a generic plan's $n hides.
    """

    def __init__(self, model_key: str, dim: int) -> None:
        self.model_key = model_key
        self.dim = dim
        expr = vector_expression(dim)
        model = sql_literal(model_key)
        self._nearest = f"""
            SELECT i.id, i.title, i.brand, i.category, i.size, i.colour, i.condition,
                   i.price, i.currency, i.image_key, 1 - ({expr} <=> $1) AS score
            FROM item_embeddings e JOIN items i ON i.id = e.item_id
            WHERE e.model_key = {model} AND i.status = 'ready' AND e.item_id <> $4
            ORDER BY {expr} <=> $1
            LIMIT $2 OFFSET $3"""
        self._vector = f"SELECT embedding FROM item_embeddings WHERE item_id = $1 AND model_key = {model}"

    async def nearest(
        self,
        connection: asyncpg.Connection,
        vector: np.ndarray,
        *,
        limit: int,
        offset: int,
        exclude_id: int = 0,
    ) -> list[Hit]:
        rows = await connection.fetch(self._nearest, vector, limit, offset, exclude_id)
        return [Hit(**{**dict(row), "score": float(row["score"])}) for row in rows]

    async def item_vector(self, connection: asyncpg.Connection, item_id: int) -> np.ndarray | None:
        value = await connection.fetchval(self._vector, item_id)
        if value is None:
            return None
        if hasattr(value, "to_numpy"):  # pgvector.Vector
            value = value.to_numpy()
        return np.asarray(value, dtype=np.float32)
