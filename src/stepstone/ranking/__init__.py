"""Estimators that rank zoo adapters for a target before any training (issue 15): LogME so far."""
