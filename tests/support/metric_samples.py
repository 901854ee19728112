"""Prometheus text as a dict of samples, for tests that scrape `/metrics`."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples_of(text: str) -> Samples:
    """Every sample of a scrape, keyed by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value_of(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value, or NaN (equal to nothing) when the scrape has no such sample."""
    return samples.get((name, tuple(sorted(labels.items()))), float("nan"))
