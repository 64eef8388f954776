"""kit.notebooks.export: the HTML report opens offline in a reader's mode, checked in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess

import nbformat
import pandas as pd
import plotly.graph_objects as go
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from kit.notebooks import export

NARRATIVE = "Why the pipeline costs little: the guard runs beside the engine."
CODE = "fig = go.Figure(go.Bar(x=['direct', 'pipeline'], y=[1.0, 0.97]))\nfig.show()"
BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
# Appended to a copy of the report: after the page has run, say what a reader sees, in the DOM Chromium dumps.
PROBE = """<script>
window.addEventListener("load", function () { setTimeout(function () {
  var folded = Array.from(document.querySelectorAll("details.kit-code"));
  var shown = function (d) { return d.querySelector(".jp-InputArea").checkVisibility(); };
  var codeShown = folded.filter(shown).length;
  folded[1].querySelector("summary").click();  // what a reader does to see the code
  var svg = document.querySelector(".plotly-graph-div .main-svg");
  var probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({folded: folded.length, code_shown: codeShown, click_shows: shown(folded[1]),
    plot_drawn: !!svg && svg.getBoundingClientRect().height > 100, bars: document.querySelectorAll(".point").length,
    table_shown: !!document.querySelector("table.dataframe") && document.querySelector("table.dataframe").offsetHeight > 0});
  document.body.appendChild(probe);
}, 500); });
</script>"""


def _executed_notebook(path):
    """A notebook as a run leaves it: narrative, a plotly figure (offline), a table; no kernel needed."""
    from plotly.offline import get_plotlyjs

    fig = go.Figure(go.Bar(x=["direct", "pipeline"], y=[1.0, 0.97]))
    bundle = export._offline_renderer().to_mimebundle(fig.to_dict())
    table = pd.DataFrame({"endpoint": ["direct", "pipeline"], "ratio": [1.0, 0.97]})
    nb = new_notebook(cells=[
        new_markdown_cell(f"# Report\n\n{NARRATIVE}"),
        new_code_cell("use_offline_plotly()", outputs=[new_output(
            "display_data", {"text/html": f'<script type="text/javascript">{get_plotlyjs()}</script>'})]),
        new_code_cell(CODE, outputs=[new_output("display_data", bundle)]),
        new_code_cell("table", execution_count=3, outputs=[new_output(
            "execute_result", {"text/html": table.to_html(), "text/plain": str(table)}, execution_count=3)]),
    ])
    nbformat.write(nb, path)
    return path


def test_report_folds_code_and_keeps_the_narrative(tmp_path):
    """Each code cell's input sits in a closed <details> (one click away); narrative and outputs are outside it."""
    page = export.export_html(_executed_notebook(tmp_path / "report.ipynb")).read_text()
    blocks = re.findall(r'<details class="kit-code">(.*?)</details>', page, re.S)
    assert len(blocks) == 3 and all("show code" in b for b in blocks)
    assert "go.Bar(" in re.sub(r"<[^>]+>", "", blocks[1]) and NARRATIVE not in "".join(blocks)
    assert NARRATIVE in page and "Plotly.newPlot" in page and "show all code" in page
    assert not re.search(r"<script[^>]*\bsrc\s*=\s*[\"']?(https?:)?//", page, re.I), "a script loads from the network"


def test_report_reads_in_headless_chromium(tmp_path):
    """In headless Chromium the report draws its plot and table, every code cell folded, and one click shows a cell."""
    browser = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if browser is None:
        pytest.skip("no Chromium (`make setup` installs chromium-headless-shell where apt-get can)")
    html_file = export.export_html(_executed_notebook(tmp_path / "report.ipynb"))
    probed = tmp_path / "probed.html"
    probed.write_text(html_file.read_text().replace("</body>", PROBE + "</body>"))
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--virtual-time-budget=5000", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    found = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert found, f"Chromium did not run the page: {result.stderr[-2000:]}"
    import html
    import json

    seen = json.loads(html.unescape(found.group(1)))
    assert seen == {"folded": 3, "code_shown": 0, "click_shows": True, "plot_drawn": True, "bars": 2, "table_shown": True}


def _target_install(root):
    """What `pip install --target root` leaves: the package, and its data files under root/share."""
    (root / "nbconvert").mkdir(parents=True)
    (root / "nbconvert" / "__init__.py").write_text("")
    (root / "share" / "jupyter" / "nbconvert" / "templates" / "lab").mkdir(parents=True)
    return root / "nbconvert" / "__init__.py"


def test_templates_of_a_target_install_are_found(tmp_path, monkeypatch):
    import nbconvert

    init = _target_install(tmp_path / "site")
    assert export.target_install_data_dir(init) == tmp_path / "site" / "share" / "jupyter"
    monkeypatch.setattr(nbconvert, "__file__", str(init))
    monkeypatch.setenv("JUPYTER_PATH", "/elsewhere")
    export._find_target_install_templates()
    export._find_target_install_templates()  # once only
    assert export.os.environ["JUPYTER_PATH"].split(export.os.pathsep) == ["/elsewhere", str(tmp_path / "site/share/jupyter")]


def test_a_virtual_environment_needs_no_extra_template_folder(tmp_path):
    (tmp_path / "lib" / "nbconvert").mkdir(parents=True)
    assert export.target_install_data_dir(tmp_path / "lib" / "nbconvert" / "__init__.py") is None
