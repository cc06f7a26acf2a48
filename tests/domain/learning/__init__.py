"""Tests of the learning loop: episodes, judge, reflexion, regimes, patterns and retrieval."""
