"""Training loops, run directories, checkpoints and metrics shared by both studies."""
