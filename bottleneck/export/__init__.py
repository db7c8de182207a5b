"""The trained classifier as files: the frozen graph, labels, SavedModel, checkpoint and TFLite."""
