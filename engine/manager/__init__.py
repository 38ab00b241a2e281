"""The mapping manager: keeps mappings on one gateway true until they are removed.

- :mod:`.state`: every mapping state, trigger and transition in one table, and the
  error policy (pure).
- :mod:`.schedule`: due times of every mapping in one heap (pure).
- :mod:`.watch`: the gateway's status, epochs, announcements and probes.
- :mod:`.mappings`: the requests that carry out the table's actions.
- :mod:`.closing`: deletes (one, or all of them on exit with a deadline).
- :mod:`.presence`: UPnP IGD's loss signal (no epoch): each mapping looked up now and then.
- :mod:`.records`: the state file ``natdeck unmap`` reads.
- :mod:`.manager`: :class:`MappingManager`, the asyncio glue and public API.
"""

from .closing import CLOSE_DEADLINE, CloseProgress
from .manager import MappingManager
from .mappings import NATPMP_ERROR_RETRY
from .presence import UPNP_CHECK_INTERVAL
from .state import FIRST_BACKOFF, MAX_BACKOFF
from .stream import MAX_QUEUED
from .watch import (
    FALLBACK_PROBE_INTERVAL,
    IDLE_PROBE_INTERVAL,
    LOCAL_ADDRESS_CHECK_INTERVAL,
    non_public_warning,
)

#: Recovery of a lost mapping on silence: 5 s doubling to at most this.
MAX_RECOVERY_BACKOFF = MAX_BACKOFF

__all__ = [
    "CLOSE_DEADLINE",
    "FALLBACK_PROBE_INTERVAL",
    "FIRST_BACKOFF",
    "IDLE_PROBE_INTERVAL",
    "LOCAL_ADDRESS_CHECK_INTERVAL",
    "MAX_QUEUED",
    "MAX_RECOVERY_BACKOFF",
    "NATPMP_ERROR_RETRY",
    "UPNP_CHECK_INTERVAL",
    "CloseProgress",
    "MappingManager",
    "non_public_warning",
]
