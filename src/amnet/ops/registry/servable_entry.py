"""MLflow models-from-code entry of amnet's servable searcher (:mod:`amnet.ops.registry.servable`).

Logged as the model's code instead of a pickled object: loading the model runs this file, which
builds the wrapper from the ``amnet`` package logged beside it (the model's ``code/amnet``, first on
``sys.path`` when MLflow loads the model; where ``amnet`` is already imported, that copy). No pickle
is ever loaded.
"""

import mlflow

from amnet.ops.registry.servable import SearchModel

mlflow.models.set_model(SearchModel())
