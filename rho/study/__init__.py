"""The study: the paper's experiments as small functions over ``params.yaml``.

``rho.study.config.Study`` resolves the parameters (profile sizes, runs) into paths and
``rho.train.TrainConfig`` objects; ``rho.study.stages`` holds one function per pipeline stage
(build data, train, score, evaluate), called by ``python -m rho.study`` from ``dvc.yaml`` and by
the notebooks.  The notebooks only plot and tabulate what these functions wrote.
"""

from rho.study.config import Study, StudyError

__all__ = ["Study", "StudyError"]
