#!/usr/bin/env python3
"""Classify images with the graph and labels written by retrain.py.

    python label_image.py photo.jpg more_photos/
    python label_image.py --graph=/tmp/output_graph.pb --labels=/tmp/output_labels.txt \
        --input_layer=Placeholder --output_layer=final_result --image=photo.jpg

Prints the top 5 labels with their scores, best first; with several images each
image's path stands on its own line before its labels.
"""
import sys

from bottleneck.cli.guard import exit_skipping_teardown
from bottleneck.cli.label_image import label_image_main

if __name__ == "__main__":
    exit_skipping_teardown(label_image_main(sys.argv[1:]))
