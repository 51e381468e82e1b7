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
    image_evaluations: Optional[Input[List[Dataset]]] = None,  # noqa: UP006, UP045
):
    """Trained variants' evaluations (+ the attribute-based baseline's, + the image-only baseline's: the
    evaluate tasks' image outputs, those left empty skipped) -> report folder, HTML, Markdown."""
    from amnet.steps.report import run_step
    from amnet.steps.results import log_results

    log_results(metrics, run_step([e.path for e in evaluations], report.path, parent_run_id,
                                  baseline=baseline.path if baseline is not None else None,
                                  decision=decision.path if decision is not None else None,
                                  html_out=report_html.path, md_out=report_md.path,
                                  image_evaluations=[e.path for e in image_evaluations or []]))
