"""Market data: bars, their file formats, ingestion and synthetic series."""
