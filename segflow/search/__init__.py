"""Hyperparameter search over one recipe search space, with Ray Tune or NNI as the backend."""
