"""Training: losses (losses), learning-rate schedules (schedule), the training loop with checkpoints,
validation and weight-set export (trainer), TensorBoard summaries (tensorboard), figures of the learned
activations (plots) and tf.distribute strategies (strategy)."""
