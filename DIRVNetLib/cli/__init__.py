"""The ``dirvnet`` command line."""
