"""The network: resolve a module, the built-in Inception-v3 and its weights, precision, running it, int8."""
