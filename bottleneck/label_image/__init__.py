"""label_image.py's engine: classify files and folders, print the answers, evaluate a folder."""
