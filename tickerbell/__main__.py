"""`python -m tickerbell`: the same as the `tickerbell` command."""

from tickerbell.cli import main

raise SystemExit(main())
