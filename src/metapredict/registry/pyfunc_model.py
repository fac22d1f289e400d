"""Models-from-code definition of the logged pyfunc model (MLflow executes this file).

``mlflow.pyfunc.log_model(python_model=<this file>, ...)`` copies it into the model; loading the
model runs it, and :func:`mlflow.models.set_model` names the model object. Nothing is pickled:
the model's state is the ``predictor`` artifact folder (JSON + LightGBM model text) that
:meth:`MetapredictPyfunc.load_context` reads. Never imported by metapredict itself.
"""

from mlflow.models import set_model

from metapredict.registry.pyfunc import MetapredictPyfunc

set_model(MetapredictPyfunc())
