"""The stream buffers of the worker's agents, fair to every input partition.

Faust pauses fetching from a partition whose records arrive while its stream's buffer is under
pressure (at 80 % of `stream_buffer_maxsize`), and mode's queue resumes a paused partition once
the buffer is down to 40 %. In a deep backlog it may never be: the partitions still fetched keep
it above that, so a paused partition starves for as long as the backlog lasts. Seen in a fast
quarter-long replay: one calls partition got no record for minutes at a time ("Stream stopped
processing … last inbound 6 minutes ago") while the others ran days of stream time ahead,
holding back the retention sweeps of the queues stage, whose table then grew.

Here a paused partition is resumed once the buffer is below 75 %, one per record taken: the
partitions take turns instead of some being starved.
"""

from __future__ import annotations

from typing import Any

from mode.utils.queues import ThrowableQueue


class ResumingQueue(ThrowableQueue[Any]):
    pressure_drop_ratio = 0.75  # mode's: 0.40; the pressure mark stays at 80 % (1 / 1.25)
