"""Models: baseline, tuned estimator, evaluation, tracking and the MLflow registry."""
