"""Golden data files of the domain tests (no test code lives here)."""
