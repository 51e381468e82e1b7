"""Compare the variants' evaluations in one HTML + Markdown report."""

from typing import List, Optional  # noqa: UP035 (KFP reads typing.List / typing.Optional)

from amnet_components.images import PROJECT_IMAGE
from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Output


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def build_report(
    evaluations: Input[List[Dataset]],  # noqa: UP006
    parent_run_id: str,
    report: Output[Artifact],
    report_html: Output[HTML],
    report_md: Output[Markdown],
    metrics: Output[Metrics],
    baseline: Optional[Input[Dataset]] = None,  # noqa: UP045
    decision: Optional[Input[Artifact]] = None,  # noqa: UP045
):
    """Trained variants' evaluations (+ the attribute-based baseline's) -> report folder, HTML, Markdown."""
    import json
    import os
    import shutil

    from amnet.report import run_report
    from amnet.steps.results import log_results

    paths = [e.path for e in evaluations] + ([baseline.path] if baseline is not None else [])
    gate = None
    if decision is not None and os.path.exists(os.path.join(decision.path, "decision.json")):
        with open(os.path.join(decision.path, "decision.json")) as fh:
            gate = json.load(fh)
    results = run_report(paths, report.path, parent_run_id, decision=gate)
    shutil.copyfile(os.path.join(report.path, "report.html"), report_html.path)
    shutil.copyfile(os.path.join(report.path, "report.md"), report_md.path)
    log_results(metrics, results)
