"""The optimizers under study and the factory that builds them by name.

Public API: :func:`build_optimizer`, :data:`OPTIMIZERS`, :func:`optimizer_axes`,
and the classes :class:`INSGD` and :class:`NovoGrad` (SGD is ``torch.optim.SGD``).
ALGORITHMS.md states the math each one implements.
"""

from robustness.optim.insgd import INSGD
from robustness.optim.novograd import NovoGrad
from robustness.optim.registry import OPTIMIZERS, build_optimizer, optimizer_axes

__all__ = ["INSGD", "OPTIMIZERS", "NovoGrad", "build_optimizer", "optimizer_axes"]
