"""The learning loop: episodes of closed trades, their verdicts, critiques, distilled patterns and retrieval."""
