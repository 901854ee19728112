"""docs/grafana/ganzhi.json: every query names only metrics the programs export, and uses them all.

The exported names come from the programs' own registries (`CollectorMetrics`,
`AgentMetrics`), with the sample suffixes Prometheus stores (`_total` of a counter, `_bucket`,
`_sum`, `_count` of a histogram). A query is read as PromQL enough to tell metric names from
functions, keywords, label names (in `{...}`, `by (...)`), strings and durations: any other
name in it must be an exported metric, so a misspelt one fails here, not on a blank panel.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from prometheus_client import CollectorRegistry

from collector.metrics import CollectorMetrics
from edge_agent.shell.metrics import AgentMetrics

DASHBOARD: Final = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "ganzhi.json"
DESIGN_NAMES: Final = {  # DESIGN section 11, as written there
    "gz_agent_readings_total",
    "gz_agent_outbox_undelivered_blocks",
    "gz_agent_outbox_oldest_undelivered_seconds",
    "gz_agent_device_errors_total",
    "gz_agent_rtu_bus_utilization",
    "gz_collector_blocks_total",
    "gz_collector_readings_stored_total",
    "gz_collector_ingest_lag_seconds",
    "gz_collector_gateways_online",
    "gz_collector_gaps_open",
}
# Aggregations and their modifiers, binary operators and their modifiers, and the functions
# dashboards use: PromQL's own words, not metric names.
# fmt: off
PROMQL_WORDS: Final = frozenset({
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "and", "or", "unless", "offset", "rate", "irate", "increase", "delta", "idelta",
    "deriv", "histogram_quantile", "abs", "ceil", "floor", "round", "clamp", "clamp_min",
    "clamp_max", "time", "timestamp", "vector", "scalar", "label_replace", "label_join",
    "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "count_over_time",
    "last_over_time", "absent", "absent_over_time", "changes", "resets", "sort", "sort_desc",
})
# fmt: on
# Grafana's `label_values(metric, label)` in a template variable: the label is not a metric.
_LABEL_VALUES = re.compile(r"\blabel_values\(([^,]*),\s*\w+\s*\)")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_VARIABLE = re.compile(r"\$\{?\w+\}?")
_NUMBER = re.compile(r"(?<![\w:])\d[\d.]*(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER_WORDS = frozenset({"e", "inf", "nan", "Inf", "NaN"})


def exported_names(registry: CollectorRegistry) -> set[str]:
    """Every series name a scrape of `registry` can hold, from its families' types."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    return {
        family.name + suffix
        for family in registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


def exported() -> set[str]:
    return exported_names(CollectorMetrics().registry) | exported_names(AgentMetrics([]).registry)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    text = _VARIABLE.sub(" ", _STRING.sub(" ", _LABEL_VALUES.sub(r" \1 ", expr)))
    text = _GROUPING.sub(" ", _RANGE.sub(" ", _MATCHERS.sub(" ", text)))
    text = _NUMBER.sub(" ", text)
    return {
        name
        for name in _NAME.findall(text)
        if name not in PROMQL_WORDS and name not in _NUMBER_WORDS
    }


def _queries(node: Any) -> Iterator[str]:
    """Every PromQL text in a dashboard: targets' `expr` and template variables' queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"expr", "definition"} and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, dict) and "query" in value:
                yield str(value["query"])
            else:
                yield from _queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from _queries(item)


def _dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return document


def test_the_programs_export_the_design_names() -> None:
    names = exported()
    for name in DESIGN_NAMES:
        assert name in names or f"{name}_bucket" in names, name


def test_every_dashboard_query_uses_only_exported_metrics() -> None:
    names = exported()
    queries = list(_queries(_dashboard()))
    assert len(queries) >= 12
    for query in queries:
        used = metric_names(query)
        assert used, f"no metric in {query!r}"
        assert used <= names, f"{query!r} reads {sorted(used - names)}, which nothing exports"


def test_every_exported_figure_has_a_panel() -> None:
    used = set().union(*(metric_names(q) for q in _queries(_dashboard())))
    for name in DESIGN_NAMES:
        assert name in used or f"{name}_bucket" in used, f"no panel shows {name}"


def test_the_name_reader_finds_misspelt_and_foreign_names() -> None:
    assert metric_names(
        'sum by (instance, device) (rate(gz_agent_readings_total{quality="bad"}[5m]))'
        " / on (instance) group_left max(gz_collector_gateways_online)"
    ) == {"gz_agent_readings_total", "gz_collector_gateways_online"}
    assert metric_names("histogram_quantile(0.95, rate(gz_lag_bucket[$__rate_interval]))") == {
        "gz_lag_bucket"
    }
    assert metric_names("node_load1 > 2e3") == {"node_load1"}
    assert metric_names('label_values(gz_x{a="b"}, instance)') == {"gz_x"}
    assert not {"gz_collector_gateway_online"} <= exported()


def test_the_dashboard_is_importable() -> None:
    document = _dashboard()
    panels = document["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    variables = {v["name"] for v in document["templating"]["list"]}
    for panel in panels:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        if panel["type"] != "row":
            # Every panel reads the chosen Prometheus, not one named in this file.
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]
    assert "datasource" in variables
