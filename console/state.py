"""What callbacks reach through Flask's ``current_app``: never imported from the app module."""

from __future__ import annotations

from dataclasses import dataclass

import flask

from console.config import ConsoleConfig
from console.cost import PlanCache, SpendCache
from console.db import MetricsDatabase

EXTENSION = "prethrift_console"


@dataclass
class ConsoleState:
    config: ConsoleConfig
    database: MetricsDatabase
    plans: PlanCache
    spend: SpendCache


def state() -> ConsoleState:
    found: ConsoleState = flask.current_app.extensions[EXTENSION]
    return found
