"""What one process holds once: settings, database, catalogue, schemas, broker publisher."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import current_app

from mecc.clinical.catalogue import Catalogue
from mecc.platform.db import Database
from mecc.platform.settings import Settings

if TYPE_CHECKING:
    from mecc.platform.broker import Publisher


@dataclass
class Runtime:
    settings: Settings
    db: Database
    catalogue: Catalogue
    event_schema: type[Any]
    publisher: Publisher
    extras: dict[str, Any] = field(default_factory=dict)


def current() -> Runtime:
    runtime: Runtime = current_app.extensions["mecc"]
    return runtime
