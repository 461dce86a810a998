"""The original SDK's ``aiges.core.types`` import path."""

from aiges.types import *  # noqa: F403
from aiges.types import __all__  # noqa: F401
