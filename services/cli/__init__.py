"""The `safeguard` command line, and the pure replay behind `safeguard backtest`."""
