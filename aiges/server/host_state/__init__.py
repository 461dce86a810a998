"""Shared state for the fronts of one port on one host (``[svcName] reuseport``): the replay
cache, licences, per-app rate and sessions, and the registry of live fronts, in one file of
shared memory with byte-range locks (``host.py`` has the picture, ``locks.py`` why these locks).

    layout.py      where everything is in the file
    locks.py       open file description locks (fcntl F_OFD_SETLKW), each with a thread lock
    state_file.py  the file opened, checked or made, mapped; removed by the last front
    fronts.py      the live fronts: a slot each, held for the front's life
    counters.py    licences, token buckets, sessions: each front's share in its own slot
    host.py        HostState: what a front uses
"""

from aiges.server.host_state.fronts import FrontInfo
from aiges.server.host_state.host import HostSettings, HostState, default_folder, joined, settings_for
from aiges.server.host_state.state_file import HostStateError

__all__ = ["FrontInfo", "HostSettings", "HostState", "HostStateError", "default_folder", "joined", "settings_for"]
