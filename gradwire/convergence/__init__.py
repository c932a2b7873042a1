"""Time to accuracy: real training with compressed gradients on K virtual workers.

:func:`run_convergence` trains a zoo model on a :data:`TASKS` data set with each codec
(K workers, each gradient through the codec with its own state, combined as the
collective would); :func:`accuracy_vs_time` and :func:`time_to_accuracy` put the
resulting :class:`Curve` on the simulated clock (steps x simulated iteration time).
"""

from gradwire.convergence.clock import accuracy_vs_time, steps_to_target, time_to_accuracy
from gradwire.convergence.runner import EXCHANGES, Curve, run_convergence
from gradwire.convergence.tasks import TASKS, Task

__all__ = [
    "EXCHANGES",
    "TASKS",
    "Curve",
    "Task",
    "accuracy_vs_time",
    "run_convergence",
    "steps_to_target",
    "time_to_accuracy",
]
