"""The bottleneck phase: every image's vector in the cache, computed in batches where missing."""
