"""Learning-rate schedules."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def step_decay(
    learning_rate: float, decay_epochs: Sequence[int], factor: float
) -> Callable[[int], float]:
    """The published schedule: the rate times `factor` once at each epoch in `decay_epochs`.

    Args:
        learning_rate: the rate of epoch 0.
        decay_epochs: 0-based epochs from which one more factor applies (40 means the 41st).
        factor: multiplier per decay.

    Returns:
        A function epoch -> learning rate, for `keras.callbacks.LearningRateScheduler`.
    """
    if learning_rate <= 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate!r}")
    if not 0 < factor <= 1:
        raise ValueError(f"factor must be in (0, 1], got {factor!r}")
    if any(epoch < 1 for epoch in decay_epochs):
        raise ValueError(f"decay_epochs must be positive, got {list(decay_epochs)}")
    milestones = sorted(decay_epochs)

    def schedule(epoch: int, current: float | None = None) -> float:
        passed = sum(1 for milestone in milestones if epoch >= milestone)
        return learning_rate * factor**passed

    return schedule
