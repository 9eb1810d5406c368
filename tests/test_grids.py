import pytest

from mmseg_segvit.grids import patch_grid


@pytest.mark.parametrize(
    'img_size, patch_size, grid',
    [
        (512, 16, (32, 32)),
        ((480, 640), 16, (30, 40)),
        ([128, 96], 8, (16, 12)),
        ((100, 70), 16, (6, 4)),  # a partial last patch is not counted
        ((64, 48), (16, 8), (4, 6)),
    ])
def test_patch_grid(img_size, patch_size, grid):
    assert patch_grid(img_size, patch_size) == grid
    assert all(type(n) is int for n in patch_grid(img_size, patch_size))
