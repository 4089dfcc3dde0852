"""Training: losses, the training loop with checkpoints, and weight-set export."""
