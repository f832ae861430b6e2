"""Structured JSON logs (one event per line) and metrics, via AWS Lambda Powertools."""

from __future__ import annotations

from collections.abc import Sequence

from aws_lambda_powertools import Logger, single_metric
from aws_lambda_powertools.metrics import MetricUnit

from chalicelib.core.telemetry import NAMESPACE, Point

SERVICE = "edge-billing"
logger = Logger(service=SERVICE)


def publish(points: Sequence[Point], environment: str) -> None:
    """Each point as one CloudWatch EMF line (printed to stdout; Lambda ships it to CloudWatch Logs,
    which turns it into a metric). A metric that fails to publish must never fail the request."""
    for p in points:
        dimensions = {"service": SERVICE, "environment": environment} | dict(p.dimensions)
        try:
            with single_metric(name=p.name, unit=MetricUnit[p.unit], value=p.value, namespace=NAMESPACE,
                               default_dimensions=dimensions):
                pass
        except Exception as exc:
            logger.warning("metric_not_published", extra={"metric": p.name, "error": str(exc)})
