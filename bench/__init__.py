"""Benchmarks of the tool's speed and of the accuracy behind its defaults: run each from the repository root
as ``.venv/bin/python -m bench.<script>`` (bench/README.md lists them)."""
