"""Scalar stage results -> a KFP ``Metrics`` artifact (shared by every component body).

Duck-typed (anything with ``log_metric`` and ``path``): amnet never imports kfp. It lives here, not in
``amnet_components``, because importing that package inside a running component would re-execute
its ``@dsl.component`` decorators in the slim executor runtime.
"""

import json
import os


def log_results(metrics, results: dict) -> None:
    """Log numeric results on ``metrics`` and also write them as JSON at ``metrics.path``.

    The file matters locally: kfp.local treats a cache entry whose artifact has no file as a miss,
    and a Metrics output normally has none, so without it no stage with metrics would ever be
    served from the cache (``amnet run --local`` would retrain unchanged upstream stages).
    """
    numeric = {k: float(v) for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for name, value in numeric.items():
        metrics.log_metric(name, value)
    os.makedirs(os.path.dirname(metrics.path) or ".", exist_ok=True)
    with open(metrics.path, "w") as fh:
        json.dump(numeric, fh, indent=2, sort_keys=True)
