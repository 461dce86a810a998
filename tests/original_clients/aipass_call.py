"""Calls an ASE HTTP route with the original AIGes package's own HTTP client
(``aiges/client/utils/aipass_client.py``, which signs the URL with host/date/authorization):
``python aipass_call.py WHEEL_ROOT URL`` with the request data (payload media as file paths, as
that client takes them) as JSON on stdin; prints ``{"status", "body"}``. Run it in a folder that
has ``resource/output/`` (the client empties it first) and the media files.

The original ``aiges`` package is imported from WHEEL_ROOT, put first on sys.path, so this
process never sees this project's ``aiges``.
"""

import json
import sys
from pathlib import Path
from typing import Any

wheel_root = Path(sys.argv[1]).resolve()
sys.path.insert(0, str(wheel_root))

from aiges.client.utils import aipass_client  # noqa: E402

if not Path(aipass_client.__file__).resolve().is_relative_to(wheel_root):
    raise SystemExit(f"imported {aipass_client.__file__}, not the original package under {wheel_root}")

replies: list[Any] = []  # the requests.Response of each call
aipass_client.execute(sys.argv[2], json.load(sys.stdin), "POST", "app-1", "key-1", "secret-1", callback=replies.append)
[reply] = replies
json.dump({"status": reply.status_code, "body": reply.json()}, sys.stdout)
