"""The topic catalog (topics/catalog.yaml) and idempotent creation of its topics at start."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream_app.kafka_clients import client_options
from stream_app.settings import Settings

log = logging.getLogger(__name__)

CATALOG_PATH = Path(
    os.environ.get(
        "TOPIC_CATALOG", Path(__file__).resolve().parent.parent / "topics" / "catalog.yaml"
    )
)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str  # the catalog name, without TOPIC_PREFIX
    role: str
    partitions: int | str  # a count, or "same-as OTHER"
    config: dict[str, str]


def load_catalog(path: Path = CATALOG_PATH, *, default_partitions: int = 8) -> dict[str, TopicSpec]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    specs: dict[str, TopicSpec] = {}
    for name, spec in data["topics"].items():
        partitions = spec.get("partitions", "default")
        specs[name] = TopicSpec(
            name=name,
            role=spec["role"],
            partitions=default_partitions if partitions == "default" else partitions,
            config={str(k): str(v) for k, v in (spec.get("config") or {}).items()},
        )
    return specs


async def ensure_topics(settings: Settings) -> dict[str, int]:
    """Create the catalog's missing topics under TOPIC_PREFIX; return each topic's partition count.

    Existing topics are left as they are (a user may have sized them); co-partitioned tick
    topics follow the partition count their data topic really has.
    """
    catalog = load_catalog(default_partitions=settings.topic_partitions)
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=15000)
    await admin.start()
    try:
        counts = await _partition_counts(admin, [settings.topic(n) for n in catalog])
        for spec in sorted(catalog.values(), key=lambda s: isinstance(s.partitions, str)):
            full = settings.topic(spec.name)
            if full in counts:
                continue
            partitions = spec.partitions
            if isinstance(partitions, str):
                partitions = counts[settings.topic(partitions.removeprefix("same-as ").strip())]
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            full,
                            num_partitions=partitions,
                            replication_factor=settings.topic_replication,
                            topic_configs=spec.config,
                        )
                    ]
                )
                log.info("created topic %s (%d partitions)", full, partitions)
            except Exception as exc:  # TopicExistsError: another worker was first
                if type(exc).__name__ != "TopicAlreadyExistsError":
                    raise
            counts[full] = partitions
        await _until_visible(admin, sorted(counts))
        return counts
    finally:
        await admin.close()


VISIBLE_WITHIN_S = 30.0


async def _until_visible(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    """Wait until the broker describes every topic with a leader for each partition: a worker
    that joins its group before then is assigned nothing of a topic the broker does not show
    yet (seen on a loaded machine right after creating them)."""
    deadline = time.monotonic() + VISIBLE_WITHIN_S
    while True:
        described = await admin.describe_topics(names)
        missing = [
            d["topic"]
            for d in described
            if d.get("error_code")
            or not d["partitions"]
            or any(p["leader"] < 0 for p in d["partitions"])
        ]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"topics not visible on the broker after {VISIBLE_WITHIN_S:.0f} s: {missing}"
            )
        await asyncio.sleep(0.2)


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    existing = set(await admin.list_topics())
    wanted = [n for n in names if n in existing]
    if not wanted:
        return {}
    described = await admin.describe_topics(wanted)
    return {d["topic"]: len(d["partitions"]) for d in described if not d.get("error_code")}
