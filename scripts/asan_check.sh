#!/usr/bin/env bash
# Runs the example C engine under AddressSanitizer inside a real aiges worker: one-shot calls
# (sync and async) and sessions (sync reads and callbacks), then looks for ASan reports in the
# server's log (a worker's stderr is logged line by line). Exit 1 if ASan reported anything.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -O0 -g -fsanitize=address -fno-omit-frame-pointer -fPIC -pthread -shared -Iwrappers/c \
    -o "$work/libwrapper.so" wrappers/c/example/engine.c
asan=$(gcc -print-file-name=libasan.so)
for mode in false true; do
  port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat > "$work/aiges.toml" <<TOML
[svcName]
host = "127.0.0.1"
port = $port
[aiges]
wrapper = "$work/libwrapper.so"
asyncMode = $mode
[worker]
count = 1
gpus = ""
[metrics]
port = 0
[log]
format = "json"
[wrapper]
prefix = "> "
TOML
  LD_PRELOAD=$asan ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 $PY -m aiges serve -c "$work/aiges.toml" \
    > "$work/server-$mode.log" 2>&1 &
  server=$!
  $PY - "$port" <<'PYTHON'
import sys, time
from aiges.client import Client, Input
address = f"127.0.0.1:{sys.argv[1]}"
for _ in range(200):
    try:
        with Client(address, timeout=5) as client:
            client.once({"text": b"x"}, expect=["text"])
        break
    except Exception:
        time.sleep(0.1)
with Client(address) as client:
    for size in (1, 1000, 100_000, 3 << 20):
        payload = bytes(range(256)) * (size // 256) + b"tail"
        assert client.once({"blob": Input(payload, 4)}, expect={"blob": "other"})["blob"] == payload
    assert client.once({"text": b"fail"}, expect=["text"], check=False).code in (10909, 10910)
    for transport in ("xsf", "stream"):
        with client.session(expect=["count"], transport=transport) as session:
            for i in range(50):
                session.write({"audio": Input(bytes(i + 1), 1)}, last=i == 49)
            texts = [item.text for batch in session.results() for item in batch.items]
        assert texts[-1] == "total: 1275 bytes in 50 chunks", texts[-1]
print("calls done")
PYTHON
  kill -TERM $server; wait $server || true
  if grep -q "AddressSanitizer" "$work/server-$mode.log"; then
    grep "AddressSanitizer" -A20 "$work/server-$mode.log"; echo "asan_check: FAILED (asyncMode=$mode)"; exit 1
  fi
  echo "asan_check: asyncMode=$mode: one-shot (1 B to 3 MiB, error path) and 2 sessions of 50 chunks: no ASan report"
done
