"""``from aiges.utils.log import log``, as wrappers written for the original SDK do.

Records go to the worker's stderr, which the server captures and logs with the worker id.
"""

import logging

log = logging.getLogger("wrapper")

__all__ = ["log"]
