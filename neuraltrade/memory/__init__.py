"""The vector memory's domain rules: collections, embeddings, queries, snapshots and the session cache."""
