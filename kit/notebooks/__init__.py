"""The notebooks: parameters checked by type, papermill runs, offline HTML reports, index pages.

One subject per module:

* :mod:`kit.notebooks.parameters` — which notebook, what it declares, values read and checked by type;
* :mod:`kit.notebooks.runner` — :func:`run_one` and :func:`demo` (01 → 04 with one server);
* :mod:`kit.notebooks.export` — the HTML report (offline, code folded) and offline plotly figures;
* :mod:`kit.notebooks.index` — the index page of a run and of every run;
* :mod:`kit.notebooks.kernel` — the project's Jupyter kernel; :mod:`kit.notebooks.lab` — ``make lab``.

The names below are the package's API, used by the CLI and the notebooks themselves.

>>> from kit import notebooks                                # doctest: +SKIP
>>> notebooks.demo(params_file="params/cpu.yaml")            # doctest: +SKIP
>>> notebooks.run_one("03", overrides={"case_max_tokens": 8})  # doctest: +SKIP
"""

from kit.exceptions import NotebookError
from kit.notebooks.export import export_html, use_offline_plotly
from kit.notebooks.index import GUARDRAILS_SUMMARY, PERFORMANCE_SUMMARY, RUN_RECORD, write_index
from kit.notebooks.kernel import KERNEL_NAME
from kit.notebooks.parameters import (
    DEMO_NOTEBOOKS,
    NOTEBOOKS_DIR,
    RUNNER_PARAMETERS,
    check_parameters,
    declared_parameters,
    notebook_path,
    parse_overrides,
    parse_value,
    project_path,
    split_parameters,
)
from kit.notebooks.runner import (
    RUN_ID_VARIABLE,
    NotebookRun,
    default_reports_dir,
    demo,
    execute,
    new_run_dir,
    run_one,
)

__all__ = [
    "DEMO_NOTEBOOKS", "GUARDRAILS_SUMMARY", "KERNEL_NAME", "NOTEBOOKS_DIR", "PERFORMANCE_SUMMARY", "RUNNER_PARAMETERS",
    "RUN_ID_VARIABLE", "RUN_RECORD", "NotebookError", "NotebookRun", "check_parameters", "declared_parameters",
    "default_reports_dir", "demo", "execute", "export_html", "new_run_dir", "notebook_path", "parse_overrides",
    "parse_value", "project_path", "run_one", "split_parameters", "use_offline_plotly", "write_index",
]
