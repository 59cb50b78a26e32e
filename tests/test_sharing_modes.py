"""Masks shared across the batch, one per channel (``sharing="batch_per_channel"``, gluon-cv's law)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dropblock
from verification.properties._masks import independent_masks
from verification.theory import mask_ids

LAW = "paper,seed_region=all,sharing=batch_per_channel"


@pytest.mark.parametrize("native", [True, False])
def test_samples_share_each_channels_mask(seed, native, monkeypatch):
    if not native:
        monkeypatch.setattr(dropblock._native, "enabled", lambda: False)
    torch.manual_seed(seed)
    out = dropblock.drop_block2d(torch.ones(5, 16, 12, 12), 0.2, 3, profile=LAW)
    dropped = out == 0
    assert bool((dropped == dropped[:1]).all())
    # channels differ (16 independent masks of 144 units at rate ~0.2: equal by chance with p < 1e-30)
    assert len({tuple(dropped[0, c].flatten().tolist()) for c in range(16)}) == 16
    kept = (~dropped).sum().item()
    assert torch.allclose(out[~dropped], torch.tensor(out.numel() / kept))


def test_draw_multiplier_matches_the_operator(seed):
    x = torch.ones(3, 4, 10, 10)
    torch.manual_seed(seed)
    out = dropblock.drop_block2d(x, 0.3, 3, profile=LAW)
    torch.manual_seed(seed)
    from dropblock import _keys

    m = torch.ops.dropblock.drop_block_mask(list(x.shape), x.dtype, x.device, torch.tensor(0.3, dtype=torch.float64),
                                            3, 2, _keys.profile_key(dropblock.get_profile(LAW)), 0)
    assert m.shape == (1, 4, 10, 10)
    assert torch.equal((x * m), out)


def test_mask_ids_and_independent_masks():
    ids = mask_ids(3, 4, LAW)
    assert ids.tolist() == [[0, 1, 2, 3]] * 3
    dropped = np.random.default_rng(0).random((3, 4, 5, 5)) < 0.5
    assert np.array_equal(independent_masks(dropped, "batch_per_channel"), dropped[0])
    assert np.array_equal(independent_masks(dropped, "channel"), dropped[:, 0])
    assert np.array_equal(independent_masks(dropped, "none"), dropped.reshape(12, 5, 5))
