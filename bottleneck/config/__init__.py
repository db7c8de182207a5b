"""Every setting of a run, declared once with its default, and every check of the settings."""
