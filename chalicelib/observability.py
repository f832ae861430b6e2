"""Structured JSON logs (one event per line) and metrics, via AWS Lambda Powertools."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

SERVICE = "edge-billing"
logger = Logger(service=SERVICE)
metrics = Metrics(service=SERVICE, namespace="EdgeBilling")
