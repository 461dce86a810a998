"""``aiges gateway``: one entry for every registered aiges host, on Debian's HAProxy (the part
WebGate plays on the AI platform).

    topology.py        the registry's providers -> backends per service, a slot per host, maps
    haproxy_config.py  the haproxy.cfg written at start (and when a new service needs a backend)
    runtime_api.py     HAProxy's runtime API (its admin socket): set server, maps, server state
    registry_watch.py  every provider under the registry prefix, followed with an etcd watch
    sync.py            keeps HAProxy's servers, weights and maps in step with the topology
    haproxy_process.py HAProxy itself, in master-worker mode: start, reload, stop
    command.py         the command line

Hosts that register, drain or vanish change servers through the runtime API (``set server ...
addr/state/weight``, ``set map``), with no reload; only a service seen for the first time (a new
backend) or more hosts than slots make a new haproxy.cfg, taken by a seamless reload that keeps
the servers' state (``server-state-file``).
"""
