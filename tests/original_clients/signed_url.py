"""Prints a URL signed by the original AIGes package's own ``ne_utils.build_auth_request_url`` (what
its HTTP client ``aipass_client`` and its WebSocket client sign with):
``python signed_url.py WHEEL_ROOT URL METHOD API_KEY API_SECRET``. The original ``aiges`` package is
imported from WHEEL_ROOT, put first on sys.path, so this process never sees this project's ``aiges``.
"""

import sys
from pathlib import Path

wheel_root = Path(sys.argv[1]).resolve()
sys.path.insert(0, str(wheel_root))

from aiges.client.utils import ne_utils  # noqa: E402

if not Path(ne_utils.__file__).resolve().is_relative_to(wheel_root):
    raise SystemExit(f"imported {ne_utils.__file__}, not the original package under {wheel_root}")

print(ne_utils.build_auth_request_url(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]))
