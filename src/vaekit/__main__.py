"""``python -m vaekit`` (and ``torchrun -m vaekit``) runs the command line."""

from vaekit.cli import main

raise SystemExit(main())
