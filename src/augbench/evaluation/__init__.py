"""Evaluation beyond clean accuracy, run on a run's final weights: one module per kind of measurement."""
