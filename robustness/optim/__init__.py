"""The optimizers under study and the factory that builds them by name.

Public API: :func:`build_optimizer`, :data:`OPTIMIZERS`, :func:`optimizer_axes`,
:func:`optimizer_entry` and :class:`OptimizerEntry` (how each optimizer, built in
or a ``torch.optim.Optimizer`` subclass of the user's by import path, is built from
the swept axes), and the classes :class:`INSGD` and :class:`NovoGrad` (SGD,
Adam and AdamW are ``torch.optim``'s).
Each class's module docstring states the math it implements; docs/algorithms.md
gathers it with the init schemes and where public implementations differ.
"""

from robustness.optim.insgd import INSGD
from robustness.optim.novograd import NovoGrad
from robustness.optim.registry import (
    AXES,
    OPTIMIZERS,
    OptimizerEntry,
    build_optimizer,
    is_builtin,
    optimizer_axes,
    optimizer_entry,
    unmapped_axis_message,
)

__all__ = [
    "AXES",
    "INSGD",
    "OPTIMIZERS",
    "NovoGrad",
    "OptimizerEntry",
    "build_optimizer",
    "is_builtin",
    "optimizer_axes",
    "optimizer_entry",
    "unmapped_axis_message",
]
