"""Training data: synthetic images and smooth deformations, supervised pairs by the swap trick (pairs),
and real volumes and unsupervised image pairs from the user's folders (folders), as tf.data pipelines."""
