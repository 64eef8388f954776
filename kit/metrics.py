"""Triton's Prometheus metrics: one scraper, one parser, used by the notebooks, the tests and the bench.

Triton serves every counter, gauge and histogram of the server, of the kit's
guard (``kit_guard_*_total``, labelled ``model``) and of vLLM (``vllm:*``) as
Prometheus text on its metrics port, at ``<metrics_url>/metrics``. The
parser reads the text exposition format (``name{label="value",...} value
[timestamp]``, ``#`` comments) and keeps names exactly as written:
``prometheus_client``'s parser would rename Triton's counters that lack the
``_total`` suffix (``nv_inference_count`` → ``nv_inference_count_total``).

>>> from kit import metrics                                         # doctest: +SKIP
>>> metrics.total(metrics.scrape("http://127.0.0.1:8002"),          # doctest: +SKIP
...               "kit_guard_prompts_blocked_total", model="llama_bls_ensemble")
3.0
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from kit.exceptions import ServerError

GUARD_COUNTERS = ("kit_guard_prompts_blocked_total", "kit_guard_words_censored_total", "kit_guard_time_us_total")
"""The guarded pipeline's counters (declared by ``kit/triton_models/pipeline.py``), labelled ``model``."""

_LINE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+-?\d+)?$")
_LABEL = re.compile(r'\s*(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*(?:,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


@dataclass(frozen=True)
class Sample:
    """One line of Prometheus text: ``name{labels} value`` (counters keep their ``_total`` suffix)."""

    name: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """``name{a="x",b="y"}`` (labels sorted), the way the line identifies the series."""
        if not self.labels:
            return self.name
        escape = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})
        inner = ",".join(f'{k}="{v.translate(escape)}"' for k, v in sorted(self.labels.items()))
        return f"{self.name}{{{inner}}}"


def parse(text: str) -> list[Sample]:
    """Every sample in Prometheus text (comments and ``# TYPE``/``# HELP`` lines skipped).

    Raises :class:`ValueError` naming the first line that is not Prometheus' text format.
    """
    samples = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise ValueError(f"line {number} is not a Prometheus sample: {line[:120]!r}")
        labels = {}
        rest = match["labels"] or ""
        while rest.strip():
            label = _LABEL.match(rest)
            if not label:
                raise ValueError(f"line {number} has malformed labels: {line[:120]!r}")
            value = re.sub(r"\\.", lambda m: _UNESCAPE.get(m.group(0), m.group(0)), label["value"])
            labels[label["key"]] = value
            rest = rest[label.end():]
        try:
            value = float(match["value"])
        except ValueError:
            raise ValueError(f"line {number} has no number for its value: {line[:120]!r}") from None
        samples.append(Sample(match["name"], value, labels))
    return samples


def scrape(metrics_url: str, timeout: float = 10.0) -> list[Sample]:
    """The samples at ``<metrics_url>/metrics`` (e.g. ``http://127.0.0.1:8002``).

    Raises :class:`ServerError` when the port does not answer or the answer is not Prometheus text.
    """
    url = f"{metrics_url.rstrip('/')}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            text = resp.read().decode("utf-8")
    except (urllib.error.URLError, OSError) as exc:
        raise ServerError(f"no metrics at {url} ({getattr(exc, 'reason', exc)}); is the server running "
                          "(`python -m kit status`) with --allow-metrics?") from None
    try:
        return parse(text)
    except ValueError as exc:
        raise ServerError(f"{url} did not answer Prometheus text: {exc}") from None


def total(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0.0 when none match)."""
    return sum(s.value for s in samples
               if s.name == name and all(s.labels.get(k) == str(v) for k, v in labels.items()))


def totals(samples: Iterable[Sample], names: Iterable[str], **labels: str) -> dict[str, float]:
    """:func:`total` of each of ``names``: name → sum."""
    samples = list(samples)
    return {name: total(samples, name, **labels) for name in names}
