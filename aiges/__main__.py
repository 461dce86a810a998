import sys

from aiges.cli import main

sys.exit(main())
