"""Monitoring: drift, online quality, reports and the retraining trigger."""
