"""What a run shows on the terminal: progress lines and bounded repeated warnings."""
