"""Training data: synthetic images, synthetic smooth deformations, and pairs built from them."""
