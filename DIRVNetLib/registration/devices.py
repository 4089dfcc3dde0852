"""Where the network runs, by name (imports without TensorFlow, for the command line's options)."""

DEVICES = ("auto", "cpu", "gpu")
"""auto: a GPU if TensorFlow sees one, else the CPU; cpu; gpu (an error without one)."""
