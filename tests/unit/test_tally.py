"""`Tally`, the lock-free counter the stages count every event with, exposes what a
prometheus_client `Counter` with the same name, help and label would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, disable_created_metrics, generate_latest

from stream_app.metrics import Metrics, Tally


def test_a_tally_is_exposed_as_the_counter_it_replaces() -> None:
    disable_created_metrics()  # type: ignore[no-untyped-call]  # as the worker's metrics do
    counter_registry, tally_registry = CollectorRegistry(), CollectorRegistry()
    counter = Counter("things", "Things seen, by kind.", ["kind"], registry=counter_registry)
    tally = Tally("things", "Things seen, by kind.", "kind", ["a", "b"], tally_registry)
    for kind in ["a", "b"]:
        counter.labels(kind=kind)
    for kind in ["a", "c", "a"]:  # "c" was not declared: it appears when first counted
        counter.labels(kind=kind).inc()
        tally.inc(kind)
    exposed = generate_latest(tally_registry).decode()
    assert exposed == generate_latest(counter_registry).decode()
    assert 'things_total{kind="a"} 2.0' in exposed and 'things_total{kind="b"} 0.0' in exposed


def test_every_event_type_is_exposed_from_the_start() -> None:
    metrics = Metrics.create([])
    exposed = generate_latest(metrics.registry).decode()
    assert 'callcenter_events_total{type="call_started"} 0.0' in exposed
    metrics.events.inc("call_started")
    assert (
        'callcenter_events_total{type="call_started"} 1.0'
        in generate_latest(metrics.registry).decode()
    )
