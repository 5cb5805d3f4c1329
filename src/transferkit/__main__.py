"""python -m transferkit"""

from transferkit.cli import console_main

raise SystemExit(console_main())
