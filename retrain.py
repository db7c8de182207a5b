#!/usr/bin/env python3
"""Retrain the top layer of a pre-trained image network on your own image classes.

    python retrain.py --image_dir ~/flower_photos

See README.md for every flag; exit codes: 0 success, 2 usage or input error, 1 other failure.
"""
import sys

from bottleneck.cli.guard import exit_skipping_teardown
from bottleneck.cli.retrain import retrain_main

if __name__ == "__main__":
    exit_skipping_teardown(retrain_main(sys.argv[1:]))
