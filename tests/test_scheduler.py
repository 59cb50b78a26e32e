"""``LinearScheduler`` keeps no ramp in memory and steps through exactly the values of ``numpy.linspace``."""

from __future__ import annotations

import random
import tracemalloc

import numpy as np
import pytest

from dropblock import DropBlock2D, LinearScheduler
from dropblock.scheduler import LinearRamp


def _ramps(seed: int):
    rng = random.Random(seed)
    fixed = [(0.0, 0.25, 5), (0.0, 0.1, 5000), (0.3, 0.3, 7), (0.1, 0.0, 11), (0.0, 1.0, 1), (0.2, 0.7, 1),
             (1.0, 0.0, 2), (0.0, 5e-324, 3), (0.0, 1e-310, 1000), (0.5, 0.5 + 2**-52, 4097)]
    drawn = [(rng.random(), rng.random(), rng.randint(1, 3000)) for _ in range(200)]
    drawn += [(rng.random(), rng.random(), n) for n in (2**k + d for k in range(1, 20) for d in (-1, 0, 1))]
    return fixed + drawn


def test_ramp_values_are_numpy_linspace_bit_for_bit(seed):
    for start, stop, num in _ramps(seed):
        want = [float(v) for v in np.linspace(start, stop, num)]
        ramp = LinearRamp(start, stop, num)
        assert len(ramp) == num
        assert list(ramp) == want, (start, stop, num)
        assert ramp[-1] == want[-1] and ramp[num // 2 : num // 2 + 3] == want[num // 2 : num // 2 + 3]


def test_ramp_index_errors_and_assignment():
    ramp = LinearRamp(0.0, 1.0, 3)
    with pytest.raises(IndexError, match="out of range"):
        ramp[3]
    with pytest.raises(IndexError, match="out of range"):
        ramp[-4] = 0.5
    ramp[1] = 0.25  # items can be assigned, as in the list / numpy array the ramp replaces
    ramp[-1] = 0.75
    assert list(ramp) == [0.0, 0.25, 0.75] and len(ramp) == 3


def test_scheduler_memory_does_not_grow_with_nr_steps():
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        sched = LinearScheduler(DropBlock2D(0.0, 3), 0.0, 0.25, 2e7)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024  # the stored ramp took 1.46 GB at nr_steps = 2e7
    assert len(sched.drop_values) == 20_000_000 and sched.drop_values[-1] == 0.25
    want = np.linspace(0.0, 0.25, 3_000_001)  # 24 MB; every value checked
    assert list(LinearRamp(0.0, 0.25, 3_000_001)) == want.tolist()


def test_scheduler_steps_through_the_ramp_then_holds(seed):
    rng = random.Random(seed)
    for nr_steps in (1, 2, 3, 10, 997, rng.randint(1, 5000)):
        sched = LinearScheduler(DropBlock2D(0.0, 3), 0.05, 0.3, nr_steps)
        want = [float(v) for v in np.linspace(0.05, 0.3, nr_steps)]
        seen = []
        for _ in range(nr_steps + 3):
            sched.step()
            seen.append(sched.dropblock.drop_prob)
        assert seen == want + [want[-1]] * 3
        assert sched.current_value() == want[-1]
