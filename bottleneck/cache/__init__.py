"""The bottleneck cache: the SQLite store, the classic text files, Beam's shards, and the sets read from it."""
