"""Review what a run found: move, exclude or keep the images it flags, journaled and undoable, then run again."""
