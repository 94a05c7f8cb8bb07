"""Models: baseline, tuned XGBoost, evaluation against the contract, and the MLflow registry."""
