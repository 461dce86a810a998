"""A front's use of the host state, in a process of its own, for test_host_state.py:
``python host_state_peer.py FOLDER PORT LICENCES REPLAY_MB``, then one JSON command a line on
stdin, one JSON answer a line on stdout:

    ["acquire", n] / ["release", n]           licences taken / given back (the count done)
    ["token", app, rate, burst, n]            tokens taken
    ["open", app, limit, n] / ["close", app, n]
    ["replay", [hex signatures], expires, now]  which were a first use
    ["fronts"]                                [[index, pid, socket], ...] of the live fronts
    ["front"]                                 this one's index
    ["counts", app]                           [licences used, licences total, sessions of app]
    ["leave"]                                 close the host state and exit

The first line out is ``"joined"`` (or the error).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import structlog

from aiges.errors import AigesError
from aiges.server.host_state import HostSettings, HostState, HostStateError
from aiges.server.security.replay_cache import ReplayCache


def main() -> None:
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout is the answers
    folder, port, licences, replay_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    try:
        host = HostState.join(HostSettings(Path(folder), port, licences, replay_mb << 20))
    except HostStateError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return
    buffer, stripes = host.replay_region()
    replays = ReplayCache(buffer, stripes, host.salt, 601)
    print(json.dumps("joined"), flush=True)
    for line in sys.stdin:
        command, *args = json.loads(line)
        if command == "acquire":
            answer: object = sum(host.acquire_licence() for _ in range(args[0]))
        elif command == "release":
            for _ in range(args[0]):
                host.release_licence()
            answer = args[0]
        elif command == "token":
            app, rate, burst, count = args
            answer = sum(host.take_token(app, rate, burst) for _ in range(count))
        elif command == "open":
            app, limit, count = args
            answer = sum(host.open_session(app, limit) for _ in range(count))
        elif command == "close":
            for _ in range(args[1]):
                host.close_session(args[0])
            answer = args[1]
        elif command == "replay":
            signatures, expires, now = args
            try:
                answer = [replays.first_use(bytes.fromhex(s), expires, now) for s in signatures]
            except AigesError as exc:
                answer = {"code": exc.code}
        elif command == "fronts":
            answer = [[f.index, f.pid, f.socket] for f in host.fronts()]
        elif command == "front":
            answer = host.front
        elif command == "counts":
            answer = [host.licences_used(), host.licences_total(), host.sessions(args[0])]
        elif command == "leave":
            host.close()
            print(json.dumps("left"), flush=True)
            return
        else:
            answer = {"error": f"unknown command {command!r}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
