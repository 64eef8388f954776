"""Index pages of the reports: one per run folder, and ``<reports>/index.html`` listing every run.

A run's ``index.html`` links each notebook's report and shows its status, the
guardrail pass/fail summary (``guardrails_summary.json``, written by notebook
03), the headline performance numbers (``performance_summary.json``, notebook
04) and the run's parameters. Pages are static HTML with inline CSS.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

GUARDRAILS_SUMMARY = "guardrails_summary.json"
PERFORMANCE_SUMMARY = "performance_summary.json"
RUN_RECORD = "run.json"



_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 980px;
       color: #1f2328; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.muted { color: #656d76; } table { border-collapse: collapse; margin: .5rem 0; }
th, td { border: 1px solid #d0d7de; padding: .35rem .7rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } code { background: #f6f8fa; padding: 0 .25rem; border-radius: 3px; }
.ok { color: #1a7f37; font-weight: 600; } .bad { color: #cf222e; font-weight: 600; }
.big { font-size: 1.4rem; font-weight: 600; }
"""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def write_index(run_dir: Path | str, params: Mapping[str, Any] | None = None) -> Path:
    """Write ``<run_dir>/index.html``: every report of the run, its parameters, the guardrail
    pass/fail summary and the headline performance numbers; refresh ``<reports>/index.html``.
    """
    run_dir = Path(run_dir)
    record = _read_json(run_dir / RUN_RECORD) or {}
    params = dict(params if params is not None else record.get("parameters", {}))
    e = html.escape
    statuses = {n["name"]: n for n in record.get("notebooks", [])}
    rows = []
    for report in sorted(run_dir.glob("*.html")):
        if report.name == "index.html":
            continue
        info = statuses.get(report.stem, {})
        state = "" if not info else ('<span class="ok">passed</span>' if info.get("ok") else
                                     f'<span class="bad">failed</span><br><span class="muted">{e(info.get("error", ""))}</span>')
        seconds = f"{info['seconds']:.0f} s" if info.get("seconds") is not None else ""
        nb = report.with_suffix(".ipynb")
        nb_link = f' · <a href="{e(nb.name)}">notebook</a>' if nb.is_file() else ""
        rows.append(f'<tr><td><a href="{e(report.name)}">{e(report.stem)}</a>{nb_link}</td>'
                    f"<td>{state}</td><td>{seconds}</td></tr>")
    for name, info in statuses.items():  # a notebook that did not even produce HTML
        if not (run_dir / f"{name}.html").is_file():
            rows.append(f'<tr><td>{e(name)}</td><td><span class="bad">no report</span>'
                        f'<br><span class="muted">{e(info.get("error", ""))}</span></td><td></td></tr>')

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Reports of run {e(run_dir.name)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Triton + vLLM guardrail kit — run {e(run_dir.name)}</h1>",
    ]
    status = record.get("status")
    if status:
        css = "ok" if status == "ok" else "bad"
        parts.append(f'<p>Status: <span class="{css}">{e(status)}</span>'
                     + (f' · {record["seconds"]:.0f} s' if record.get("seconds") is not None else "") + "</p>")
    parts += ["<h2>Reports</h2>", "<table><tr><th>Notebook</th><th>Result</th><th>Time</th></tr>",
              *rows, "</table>"]

    guard = _read_json(run_dir / GUARDRAILS_SUMMARY)
    if guard:
        passed, cases = guard.get("passed", 0), guard.get("cases", 0)
        css = "ok" if guard.get("failed", 1) == 0 else "bad"
        parts += ["<h2>Guardrails</h2>",
                  f'<p class="big"><span class="{css}">{passed} / {cases}</span> cases passed</p>']
        failed = [c for c in guard.get("results", []) if not c.get("passed")]
        if failed:
            parts.append("<table><tr><th>Failed case</th><th>Expected</th><th>Actual</th></tr>")
            parts += [f"<tr><td>{e(str(c.get('case')))}</td><td>{e(str(c.get('expected')))}</td>"
                      f"<td>{e(str(c.get('actual')))}</td></tr>" for c in failed]
            parts.append("</table>")
        if guard.get("metrics"):
            parts.append("<table><tr><th>Guard metric (this run)</th><th>Change</th></tr>")
            parts += [f"<tr><td><code>{e(k)}</code></td><td>{e(_fmt(v))}</td></tr>" for k, v in guard["metrics"].items()]
            parts.append("</table>")

    perf = _read_json(run_dir / PERFORMANCE_SUMMARY)
    if perf:
        parts.append("<h2>Performance</h2>")
        if perf.get("source"):
            parts.append(f'<p class="muted">{e(str(perf["source"]))}</p>')
        headline = perf.get("headline") or {}
        if headline:
            parts.append("<table><tr><th>Headline</th><th>Value</th></tr>")
            parts += [f"<tr><td>{e(k)}</td><td>{e(_fmt(v))}</td></tr>" for k, v in headline.items()]
            parts.append("</table>")
        ratios = perf.get("ratios") or {}
        if ratios:
            parts.append("<table><tr><th>Ratio</th><th>Value</th></tr>")
            parts += [f"<tr><td>{e(k)}</td><td>{e(_fmt(v))}</td></tr>" for k, v in ratios.items()]
            parts.append("</table>")

    parts.append("<h2>Parameters</h2>")
    if params:
        parts.append("<table><tr><th>Name</th><th>Value</th></tr>")
        parts += [f"<tr><td><code>{e(k)}</code></td><td><code>{e(_fmt(v))}</code></td></tr>" for k, v in sorted(params.items())]
        parts.append("</table>")
    else:
        parts.append('<p class="muted">every notebook ran with its defaults</p>')
    parts.append('<p class="muted">Each report is a self-contained HTML file and opens offline.</p></body></html>')
    index = run_dir / "index.html"
    index.write_text("\n".join(parts) + "\n", encoding="utf-8")
    _write_reports_index(run_dir.parent)
    return index


def _write_reports_index(reports_dir: Path) -> Path:
    """``<reports>/index.html``: every run folder, newest first."""
    e = html.escape
    runs = sorted((p for p in reports_dir.iterdir() if p.is_dir() and not p.is_symlink()
                   and p.name != "latest" and (p / "index.html").is_file()), reverse=True)
    rows = []
    for run in runs:
        record = _read_json(run / RUN_RECORD) or {}
        names = ", ".join(n["name"] for n in record.get("notebooks", []))
        status = record.get("status") or ("ok" if all(n.get("ok") for n in record.get("notebooks", [])) else "failed")
        css = "ok" if status == "ok" else "bad"
        rows.append(f'<tr><td><a href="{e(run.name)}/index.html">{e(run.name)}</a></td>'
                    f'<td><span class="{css}">{e(status)}</span></td><td>{e(names)}</td></tr>')
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Kit reports</title>'
        f"<style>{_STYLE}</style></head><body><h1>Reports</h1>"
        '<p><a href="latest/index.html">latest run</a></p>'
        "<table><tr><th>Run</th><th>Status</th><th>Notebooks</th></tr>" + "".join(rows) + "</table></body></html>\n"
    )
    index = reports_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
