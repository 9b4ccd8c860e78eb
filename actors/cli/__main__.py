"""`python -m actors.cli`: the `aura-router` command (how tests and the worker supervisor
start it)."""

from actors.cli import main

raise SystemExit(main())
