"""``python -m simulator [--port 8090] [--gen-time-s 3] ...``."""

from simulator.cli import main

raise SystemExit(main())
