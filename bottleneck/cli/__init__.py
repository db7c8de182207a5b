"""The command line: retrain.py, label_image.py and ``python -m bottleneck``; logging, signals, exit codes."""
