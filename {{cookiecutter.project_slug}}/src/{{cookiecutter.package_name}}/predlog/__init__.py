"""The durable prediction log and the feedback that labels it: below serving and monitoring.

- ``store``: ``PredictionLog`` (SQLAlchemy: SQLite by default, PostgreSQL in production), the
  online counts and the store URL;
- ``featurelog``: how a logged prediction keeps its feature values for drift monitoring;
- ``feedback``: ingesting a feedback file (user rescues, reports, audits) into the log.

Serving writes here and monitoring reads here; neither imports the other.
"""
