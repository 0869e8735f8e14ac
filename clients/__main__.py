"""`python -m clients COMMAND ...`: see clients.cli."""

from clients.cli import main

raise SystemExit(main())
