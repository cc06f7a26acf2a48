"""Research: parameter sweeps, walk-forward analysis and run reports."""
