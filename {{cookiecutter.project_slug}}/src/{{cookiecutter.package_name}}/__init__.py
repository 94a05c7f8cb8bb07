"""The ML system: stages as plain functions, wired by the CLI and the Kubeflow pipeline."""

__version__ = "0.1.0"
