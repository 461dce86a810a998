import sys

from aiges.worker.main import main

sys.exit(main())
