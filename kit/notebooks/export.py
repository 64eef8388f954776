"""HTML reports of executed notebooks: offline, and in a reader's mode.

A report opens without network access (the lab template minus the scripts it
loads from CDNs; plotly.js embedded once by :func:`use_offline_plotly`) and
reads like a report: the narrative, tables and plots are shown, and each code
cell is folded into a ``<details>`` element, one click away ("show code"; a
button at the top unfolds them all). Folding is plain HTML: it needs no script.
"""

from __future__ import annotations

import os
from pathlib import Path

# The lab template minus the three scripts it loads from CDNs (require.js,
# MathJax, mermaid): the reports must open offline. Plotly brings its own.
# Code cells are folded (reader's mode): the input_group block wraps code cells only.
_REPORT_TEMPLATE = """\
{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block extra_css %}
<style>
details.kit-code > summary { cursor: pointer; color: #656d76; font-size: .8rem; padding: .1rem 0 .1rem 4rem;
                             font-family: var(--jp-code-font-family, monospace); }
details.kit-code[open] > summary { margin-bottom: .2rem; }
button.kit-code-toggle { margin: 1rem 0 0 4rem; font-size: .8rem; cursor: pointer; }
@media print { details.kit-code, button.kit-code-toggle { display: none; } }
</style>
{% endblock extra_css %}
{%- block body_header -%}
{{ super() }}
<button class="kit-code-toggle" type="button"
  onclick="var open = this.dataset.open !== '1'; this.dataset.open = open ? '1' : '0';
           this.textContent = open ? 'hide all code' : 'show all code';
           document.querySelectorAll('details.kit-code').forEach(function (d) { d.open = open; });">show all code</button>
{%- endblock body_header -%}
{% block input_group -%}
<details class="kit-code"><summary>show code</summary>
{{ super() }}
</details>
{%- endblock input_group %}
"""


def export_html(notebook_file: Path | str, html_file: Path | str | None = None) -> Path:
    """Write the report of an (executed) notebook: offline HTML, code folded; default path: the notebook's, ``.html``."""
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    notebook_file = Path(notebook_file)
    html_file = Path(html_file or notebook_file.with_suffix(".html"))
    _find_target_install_templates()
    exporter = HTMLExporter(
        extra_loaders=[jinja2.DictLoader({"kit_report.html.j2": _REPORT_TEMPLATE})],
        template_file="kit_report.html.j2",
    )
    nb = nbformat.read(notebook_file, as_version=4)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": notebook_file.stem}})
    html_file.write_text(body, encoding="utf-8")
    return html_file


def target_install_data_dir(nbconvert_init: Path | str) -> Path | None:
    """``share/jupyter`` beside the nbconvert package at ``nbconvert_init``, when it holds nbconvert's templates.

    ``pip install --target DIR`` (how ``kit bundle --install`` puts the notebook stack on a GPU
    host) writes nbconvert's templates to ``DIR/share/jupyter``, a folder Jupyter never searches:
    it knows ``sys.prefix``, the user's and the system's folders, and ``JUPYTER_PATH``.
    """
    data = Path(nbconvert_init).resolve().parents[1] / "share" / "jupyter"
    return data if (data / "nbconvert" / "templates").is_dir() else None


def _find_target_install_templates() -> None:
    """Add :func:`target_install_data_dir` of the nbconvert in use to ``JUPYTER_PATH`` (once, for this process)."""
    import nbconvert

    data = target_install_data_dir(nbconvert.__file__)
    searched = [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]
    if data is not None and str(data) not in searched:
        os.environ["JUPYTER_PATH"] = os.pathsep.join([*searched, str(data)])


def _offline_renderer():
    """A plotly renderer whose figures need no network: plotly.js is embedded once, on activation."""
    from plotly.io.base_renderers import MimetypeRenderer

    class OfflineRenderer(MimetypeRenderer):
        """plotly's renderer protocol: ``activate`` once per notebook, ``to_mimebundle`` per figure."""
        def __init__(self):
            self.embedded = False

        def activate(self):
            """Embed plotly.js in the current cell's output, once."""
            if self.embedded:
                return
            from IPython.display import HTML, display
            from plotly.offline import get_plotlyjs

            display(HTML(f'<script type="text/javascript">{get_plotlyjs()}</script>'))
            self.embedded = True

        def to_mimebundle(self, fig_dict):
            """The figure as ``text/html`` (for the HTML report) and plotly's mimetype (for JupyterLab)."""
            from plotly.io import to_html

            config = {"displaylogo": False, "responsive": True}
            page = to_html(fig_dict, config=config, include_plotlyjs=False, include_mathjax=False,
                           full_html=False, default_width="100%", default_height=480, validate=False)
            figure = {"data": fig_dict.get("data", []), "layout": fig_dict.get("layout", {}), "config": config}
            # text/html for the HTML export, the plotly mimetype for JupyterLab's plotly extension
            return {"text/html": page, "application/vnd.plotly.v1+json": figure}

    return OfflineRenderer()


def use_offline_plotly() -> None:
    """Make ``fig.show()`` produce figures that render in the exported HTML without network access.

    Call it once near the top of a notebook: it embeds plotly.js in that cell's
    output (again on every re-run, since re-running replaces that output).
    """
    import plotly.io as pio

    if "kit_offline" not in pio.renderers:
        pio.renderers["kit_offline"] = _offline_renderer()
    pio.renderers["kit_offline"].embedded = False
    pio.renderers.default = "kit_offline"
