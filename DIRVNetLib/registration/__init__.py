"""Registration: geometry and preprocessing, the inference API, recurrent refinement."""
