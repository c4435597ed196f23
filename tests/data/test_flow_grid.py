"""The flow baseline's feature, computed by hand on a flow whose cells are known."""

import numpy as np
import pytest

from mer.data.inputs.flow_grid import grid_means


def test_the_median_is_removed_then_each_cell_averaged():
    flow = np.zeros((6, 6, 2), np.float32)
    flow[..., 0] = 2.0  # the whole face drifts 2 px right...
    flow[:3, :3, 1] = 1.0  # ...and the top-left quarter moves 1 px down
    flow[4, 5, 0] = 8.0  # one pixel of the bottom-right quarter moves 6 px more
    means = grid_means(flow, 2)
    assert means.dtype == np.float32 and means.shape == (2, 2, 2)
    np.testing.assert_allclose(means[..., 0], [[0, 0], [0, 6 / 9]], atol=1e-6)
    np.testing.assert_allclose(means[..., 1], [[1, 0], [0, 0]], atol=1e-6)


def test_cells_of_uneven_sizes_cover_the_whole_flow():
    flow = np.arange(7 * 5 * 2, dtype=np.float32).reshape(7, 5, 2)
    means = grid_means(flow, 3)  # rows 3, 2, 2; columns 2, 2, 1
    residual = flow - np.median(flow, axis=(0, 1))
    np.testing.assert_allclose(means[0, 0], residual[:3, :2].mean(axis=(0, 1)), atol=1e-5)
    np.testing.assert_allclose(means[2, 2], residual[5:, 4:].mean(axis=(0, 1)), atol=1e-5)


@pytest.mark.parametrize("grid", [0, 6, 2.0, True])
def test_a_grid_that_does_not_fit_is_refused(grid):
    with pytest.raises(ValueError, match=f"grid must be an int in \\[1, 5\\], got {grid!r}"):
        grid_means(np.zeros((5, 8, 2)), grid)


def test_a_flow_without_two_channels_is_refused():
    with pytest.raises(ValueError, match=r"flow must be \(H, W, 2\), got \(4, 4, 3\)"):
        grid_means(np.zeros((4, 4, 3)), 2)
