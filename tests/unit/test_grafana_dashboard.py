"""The Grafana dashboard plots only metrics the service exports (a renamed metric breaks this test)."""

import json
import re

from prometheus_client import REGISTRY

from tests.helpers import ROOT
from workers import metrics

DASHBOARD = ROOT / "deploy" / "grafana" / "notifications.json"
# A metric name right before its label selector or range: name{...} or name[5m].
SELECTOR = re.compile(r"\b([a-z_][a-z0-9_]*)\s*[{\[]")
SUFFIXES = ("", "_total", "_bucket", "_count", "_sum", "_created")


def exported_names() -> set[str]:
    families = [*REGISTRY.collect(), *metrics.QueueDepthCollector(lambda: []).collect()]
    return {family.name + suffix for family in families for suffix in SUFFIXES}


def test_every_dashboard_query_uses_exported_metrics():
    from django_prometheus.middleware import Metrics

    Metrics.get_instance()  # registers the django_http_* metrics (lazily done by the first request)

    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {name for expr in exprs for name in SELECTOR.findall(expr)} - {"by", "rate", "sum", "max", "min"}
    assert used, "no metric found in the dashboard"
    assert used - exported_names() == set()
    assert {"queue_depth", "notification_delivery_seconds_bucket", "provider_request_seconds_bucket"} <= used
