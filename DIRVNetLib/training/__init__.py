"""Training: the typed run configuration (config), losses (losses), learning-rate schedules (schedule),
the training loop with checkpoints, validation and weight-set export (trainer), the run folder's
identity record and logs (runs), TensorBoard summaries (tensorboard), figures of the learned activations
(plots) and tf.distribute strategies (strategy)."""
