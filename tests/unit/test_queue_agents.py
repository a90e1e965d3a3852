"""An agent's timeline as one queue sees it (stream_app.domain.queue_agents): projection, the
time per state it gives, and how the queues stage keeps it (replaced from the projection's
horizon on, once per position; forgotten by the queues stage's own retention)."""

from __future__ import annotations

from stream_app.domain.agent_activity import AgentActivity
from stream_app.domain.figures import interval_key
from stream_app.domain.model import AgentEvent
from stream_app.domain.queue_agents import (
    QueueAgent,
    agents_by_state,
    apply_agent,
    first_change,
    merge,
    project,
    queue_agents,
    roster_key,
)
from tests.unit.dict_store import DictStore
from tests.unit.test_queues import HOUR, RETENTION, T0, at, make, sales_stage, store_of

S = 1000


def agent(*events: tuple[str, int, tuple[str, ...] | None, str | None]) -> AgentActivity:
    activity = AgentActivity("a1")
    for n, (type_, ts, queues, reason) in enumerate(events):
        activity.apply(AgentEvent(f"e{n}", "a1", type_, ts * S, queues, reason))
    return activity


DAY = agent(
    ("agent_logged_in", 0, ("sales", "vip"), None),
    ("agent_not_ready", 100, None, "break"),
    ("agent_queues", 150, ("sales",), None),
    ("agent_ready", 200, None, None),
    ("agent_logged_out", 400, None, None),
)


def test_a_projection_is_the_agents_timeline_while_serving_the_queue() -> None:
    assert project(DAY, "sales", since=-1) == [
        (0, "available", None),
        (100 * S, "not_ready", "break"),
        (200 * S, "available", None),
        (400 * S, "logged_out", None),
    ]
    # vip is dropped from the agent's list at 150 s: logged out for vip from then on
    assert project(DAY, "vip", since=-1) == [
        (0, "available", None),
        (100 * S, "not_ready", "break"),
        (150 * S, "logged_out", None),
    ]
    assert project(DAY, "support", since=-1) == []


def test_spans_before_the_horizon_collapse_into_the_one_in_force_there() -> None:
    assert project(DAY, "sales", since=250 * S) == [
        (200 * S, "available", None),
        (400 * S, "logged_out", None),
    ]
    assert project(DAY, "vip", since=300 * S) == []  # only logged out within the horizon


def test_time_per_state_counts_open_spans_up_to_now_and_clips_to_the_window() -> None:
    timeline = QueueAgent.from_json([list(span) for span in project(DAY, "sales", since=-1)])
    time = timeline.state_time(50 * S, 300 * S, now=250 * S)
    assert (time.ms["available"], time.ms["not_ready"]) == (100 * S, 100 * S)
    assert time.not_ready_reasons == {"break": 100 * S}
    assert time.occupancy == 0.0
    assert timeline.state_time(500 * S, 600 * S, now=550 * S).staffed_ms == 0
    assert [timeline.at(t * S) for t in (0, 99, 100, 399, 400)] == [
        "available",
        "available",
        "not_ready",
        "available",
        "logged_out",
    ]
    assert agents_by_state([timeline, timeline], 120 * S)["not_ready"] == 2


def test_the_queues_stage_replaces_a_timeline_whole_once_per_position() -> None:
    store = DictStore()
    first = [[0, "available", None]]
    second = [[0, "available", None], [60 * S, "on_call", None]]
    assert apply_agent(store, "sales", "a1", first, position=10) == 0
    assert apply_agent(store, "sales", "a1", second, position=12) == 60 * S
    assert apply_agent(store, "sales", "a1", first, position=11) is None  # older: skipped
    assert [agent.spans for agent in queue_agents(store, "sales")] == [second]
    assert apply_agent(store, "sales", "a1", [], position=13) == 0  # no longer serves it
    assert queue_agents(store, "sales") == []
    assert store.get(roster_key("sales")) == []


def test_first_change() -> None:
    a = [[0, "available", None], [10, "on_call", None]]
    assert first_change(a, a) is None
    assert first_change(a, [*a, [20, "available", None]]) == 20
    assert first_change(a, [[0, "available", None], [5, "ringing", None]]) == 5
    assert first_change(a, []) == 0
    # the horizon moved on: the span in force there is cut, which changes nothing
    assert first_change(a, [[5, "available", None], [10, "on_call", None]]) is None
    assert first_change(a, [[10, "on_call", None], [30, "available", None]]) == 30


def test_an_agents_late_change_revises_a_published_interval_only_if_its_figures_change() -> None:
    stage, _ = sales_stage()  # calls in 10:00-10:15 and 10:15-10:30
    late = at(60 * 60)
    first = dict(stage.close_due("sales", late))
    key = interval_key("sales", T0)
    assert (first[key]["occupancy"], first[key]["agents_staffed_avg"]) == (None, None)
    # An agent available from 10:00, busy 10:05-10:10, reaches the queues stage late.
    spans = [[T0, "available", None], [at(300), "on_call", None], [at(600), "available", None]]
    since = apply_agent(stage.store, "sales", "a1", spans, position=1 << 40)
    assert since == T0
    stage.mark_dirty("sales", since, late)
    revised = dict(stage.close_due("sales", late))
    assert revised[key]["occupancy"] == 300 / 900
    assert revised[key]["agents_staffed_avg"] == 1.0
    assert revised[key]["revision"] == 1
    # The same timeline again (the agents stage re-sends): nothing to publish.
    assert apply_agent(stage.store, "sales", "a1", spans, position=(1 << 40) + 1) is None
    stage.mark_dirty("sales", T0, late)  # even if marked
    assert stage.close_due("sales", late) == []


def test_a_restarted_worker_marks_every_later_interval_before_it_knows_stream_time() -> None:
    """After a restart the first records of a queue partition may be agents' timelines: with
    no stream time yet, a change marks every interval after it, not the first one only."""
    stage, _ = sales_stage()  # calls in 10:00-10:15 and 10:15-10:30
    late = at(60 * 60)
    stage.close_due("sales", late)
    spans = [[T0, "available", None], [at(1200), "on_call", None], [at(1500), "available", None]]
    since = apply_agent(stage.store, "sales", "a1", spans, position=1 << 40)
    assert since == T0
    stage.mark_dirty("sales", since, None)
    revised = dict(stage.close_due("sales", late))
    second = revised[interval_key("sales", T0 + 15 * 60 * S)]
    assert second["occupancy"] == 300 / 900 and second["revision"] == 1


def test_the_queues_stage_reads_a_queues_agents_again_only_when_one_changed() -> None:
    stage, _ = sales_stage()
    store = stage.store
    first = [[0, "available", None]]
    apply_agent(store, "sales", "a1", first, position=10)
    read = stage.agents("sales")
    assert [agent.spans for agent in read] == [first]
    assert stage.agents("sales") is read  # nothing changed: not read again
    second = [[0, "available", None], [60 * S, "on_call", None]]
    apply_agent(store, "sales", "a2", second, position=11)
    assert [agent.spans for agent in stage.agents("sales")] == [first, second]
    apply_agent(store, "sales", "a1", second, position=12)
    assert [agent.spans for agent in stage.agents("sales")] == [second, second]
    apply_agent(store, "sales", "a2", [], position=13)
    assert [agent.spans for agent in stage.agents("sales")] == [second]


def test_a_restart_re_sends_an_intervals_agent_figures_as_published() -> None:
    """The agents stage moves each timeline's horizon on; an interval published before a
    restart is re-sent with the agent figures it went out with, not ones derived again from
    timelines that no longer reach back to it (test_crash: occupancy null after a SIGKILL)."""
    stage, _ = sales_stage()  # calls in 10:00-10:15 and 10:15-10:30
    late = at(60 * 60)
    spans = [[T0, "available", None], [at(300), "on_call", None], [at(600), "available", None]]
    apply_agent(stage.store, "sales", "a1", spans, position=1 << 40)
    stage.mark_dirty("sales", T0, late)
    sent = dict(stage.close_due("sales", late))
    key = interval_key("sales", T0)
    assert sent[key]["occupancy"] == 300 / 900
    # Later the projection starts past the first interval: the horizon moved on.
    moved = [[at(1800), "available", None]]
    assert apply_agent(stage.store, "sales", "a1", moved, position=(1 << 40) + 1) is None
    assert dict(stage.published()) == sent
    assert dict(make(store_of(stage)).published()) == sent  # a restarted worker's


def test_a_projection_replaces_the_timeline_from_its_horizon_on_and_keeps_what_is_before() -> None:
    """The agents stage counts its horizon from its own clocks, ahead of the queues stage's
    closing (test_crash's clean run closed a day of intervals with the agents cut away)."""
    store = DictStore()
    day1 = [[0, "available", None], [60 * S, "on_call", None], [90 * S, "logged_out", None]]
    apply_agent(store, "sales", "a1", day1, position=1)
    later = [[90 * S, "logged_out", None], [500 * S, "on_call", None]]
    assert apply_agent(store, "sales", "a1", later, position=2, since=400 * S) == 500 * S
    [kept] = queue_agents(store, "sales")
    assert kept.spans == [*day1, [500 * S, "on_call", None]]
    # Logged out from the horizon on: the agent stays (it served before), logged out now.
    assert apply_agent(store, "sales", "a1", [], position=3, since=600 * S) == 600 * S
    [kept] = queue_agents(store, "sales")
    assert kept.spans[-1] == [600 * S, "logged_out", None] and kept.at(700 * S) == "logged_out"
    assert store.get(roster_key("sales")) == ["a1"]


def test_merge() -> None:
    old = [[0, "available", None], [10, "on_call", None], [20, "available", None]]
    assert merge(old, [[15, "not_ready", "break"]], 16) == [*old[:2], [16, "not_ready", "break"]]
    # The span in force at `since` began long before as the agents stage knows it now (it
    # forgot what came between): only its state at `since` is taken, what was kept stays.
    assert merge(old, [[-50, "available", None], [40, "on_call", None]], 30) == [
        *old,
        [40, "on_call", None],
    ]
    assert merge(old, [[10, "on_call", None]], 12) == old[:2]  # the same from the horizon on
    assert merge(old, [], 30) == [*old, [30, "logged_out", None]]
    assert merge([], [], 30) == []  # never served the queue
    assert merge(old, [[5, "logged_out", None]], None) == []  # a whole timeline replaces


def test_the_queues_stage_forgets_agents_by_its_own_retention() -> None:
    """A sweep keeps each timeline from the span in force at its horizon (or at the queue's
    first interval still to publish); an agent who serves the queue nowhere from there
    leaves its roster."""
    stage, _ = sales_stage()  # calls in 10:00-10:15 and 10:15-10:30, unpublished
    store = stage.store
    early = [[T0, "available", None], [at(600), "logged_out", None]]
    busy = [[T0, "on_call", None], [T0 + 3 * HOUR, "available", None]]
    apply_agent(store, "sales", "gone", early, position=1)
    apply_agent(store, "sales", "stays", busy, position=2)
    low = T0 + RETENTION + 4 * HOUR
    stage.sweep(low)  # the two intervals still to publish keep everything
    assert store.get(roster_key("sales")) == ["gone", "stays"]
    stage.close_due("sales", at(3600))
    stage.sweep(low)
    assert store.get(roster_key("sales")) == ["stays"]
    assert [agent.spans for agent in queue_agents(store, "sales")] == [busy[1:]]


def test_an_agents_change_marks_back_to_the_retention_from_the_low_watermark() -> None:
    """Stream time may jump days on (a partition read to its end) while another calls partition
    still revises older intervals: a change of an agent's timeline there is published again."""
    stage, _ = sales_stage()  # calls in 10:00-10:15 and 10:15-10:30
    stage.close_due("sales", at(3600))
    jumped = T0 + 5 * RETENTION
    spans = [[T0, "available", None], [at(300), "on_call", None], [at(600), "available", None]]
    since = apply_agent(stage.store, "sales", "a1", spans, position=1 << 40)
    assert since is not None
    stage.mark_dirty("sales", since, jumped, low_watermark=at(3600))
    revised = dict(stage.close_due("sales", jumped))
    assert revised[interval_key("sales", T0)]["occupancy"] == 300 / 900


def test_an_interval_the_sweep_cuts_keeps_its_agents_when_published_again() -> None:
    """The horizon of a sweep falls inside an interval already published: the timelines are
    kept from the start of that interval, so another agent's change there publishes it again
    with every agent (test_crash's clean run lost one that served 3 minutes before the
    horizon)."""
    stage, _ = sales_stage()  # calls in 10:00-10:15 and 10:15-10:30
    store = stage.store
    brief = [[at(300), "on_call", None], [at(480), "logged_out", None]]
    steady = [[T0, "available", None]]
    apply_agent(store, "sales", "brief", brief, position=1)
    apply_agent(store, "sales", "steady", steady, position=2)
    first = interval_key("sales", T0)
    published = dict(stage.close_due("sales", at(3600)))[first]
    assert published["agents_staffed_avg"] == (180 + 900) / 900
    low = T0 + RETENTION + 10 * 60 * S  # the horizon: 10:10, inside the first interval
    stage.sweep(low)
    changed = [
        [T0, "available", None],
        [at(60), "not_ready", "break"],
        [at(120), "available", None],
    ]
    since = apply_agent(store, "sales", "steady", changed, position=3, since=at(60))
    assert since == at(60)
    stage.mark_dirty("sales", since, at(3600), low_watermark=low)
    again = dict(stage.close_due("sales", at(3600)))[first]
    assert again["agents_staffed_avg"] == (180 + 900) / 900
    assert again["occupancy"] == 180 / (180 + 840)
