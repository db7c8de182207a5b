"""Know your data: suspected label errors, duplicates and leakage, from the cached bottlenecks."""
