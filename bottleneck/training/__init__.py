"""Train the new layer (and fine-tune), calibrate it, evaluate it, and log it for TensorBoard."""
