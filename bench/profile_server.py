"""Where an aiges server's CPU goes under load: py-spy samples of the server process while h2load
drives 1 KiB xsf echo calls, split into aiges's own Python, grpc's native core under the event
loop, other Python (asyncio) and grpc's threads.

    .venv/bin/python bench/profile_server.py [--seconds 10] [--top 15]

Needs py-spy (``pip install py-spy``; it reads the process's memory, so run as root or with
ptrace allowed). The server runs on core 0, h2load on core 1, as in ``bench/run.py``.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import MALLOC_ENV, ROOT, free_port, wait_serving
from run import xsf_body

# frames every sample of the main thread has (the command and the server's run loop): not work
ROOT_FRAMES = ("aiges/cli/", "serve (aiges/server/app.py", "<module> (aiges")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    folder = Path(tempfile.mkdtemp(prefix="profile-"))
    body, raw = folder / "body", folder / "profile.raw"
    xsf_body(1024, body)
    port = free_port()
    config = folder / "aiges.toml"
    config.write_text(
        f'[svcName]\nhost = "127.0.0.1"\nport = {port}\n[aiges]\nwrapper = "{ROOT / "demo" / "echo"}"\n'
        '[worker]\ncount = 1\ngpus = ""\n[fc]\nmax = 1000\n[metrics]\nport = 0\n[log]\nlevel = "warning"\n'
    )
    server = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-m", "aiges", "serve", "-c", str(config)],
        env={**os.environ, **MALLOC_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address = f"127.0.0.1:{port}"
    try:
        wait_serving(address, server)
        pid = server.pid
        load = subprocess.Popen(
            ["taskset", "-c", "1", "h2load", "-D", str(args.seconds + 4), "-c", "1", "-m", "64"]
            + ["-H", "content-type: application/grpc", "-H", "te: trailers", "-d", str(body)]
            + [f"http://{address}/utils.XsfCall/call"],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(2)  # past the connection's start
        subprocess.run(
            [spy, "record", "-p", str(pid), "-d", str(args.seconds), "-r", "200", "-f", "raw", "-o", str(raw)]
            + ["--nonblocking"],
            check=True,
            capture_output=True,
        )
        out, _ = load.communicate()
    finally:
        server.terminate()
        server.wait(30)
    rate = next((line for line in out.splitlines() if "req/s" in line and "finished" in line), "?")
    split, leaves = collections.Counter(), collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames, n = stack.split(";"), int(count)
        total += n
        ours = [f for f in frames if "aiges/" in f and not any(r in f for r in ROOT_FRAMES)]
        if any("threading.py" in f for f in frames):
            split["grpc and other threads"] += n
        elif ours:
            split["aiges Python (fronts, engine, pool, IPC, metrics)"] += n
            leaves[ours[-1]] += n
        elif frames[-1].startswith("Runner.run"):
            split["native code under the event loop (grpc core, Cython)"] += n
        else:
            split["other Python (asyncio, prometheus_client...)"] += n
    print(f"h2load: {rate.strip()}\n{total} samples at 200 Hz of the server process")
    for name, n in split.most_common():
        print(f"  {n / total:6.1%}  {name}")
    print("aiges frames, innermost:")
    for frame, n in leaves.most_common(args.top):
        print(f"  {n / total:6.1%}  {frame}")


if __name__ == "__main__":
    main()
