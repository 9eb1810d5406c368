"""mmseg_segvit.visualization: labelled panels, ATM mask grids, loss terms.

The drawing functions return matplotlib figures (and their RGB renders);
the tests read titles, legend entries and colours off the figures.
"""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgb

from mmseg_segvit.datasets import SegVitShapesDataset
from mmseg_segvit.tools import plot_losses
# yapf: disable
from mmseg_segvit.visualization import (DEMO_COLUMNS, IGNORE_COLOURS,
                                        PREDICTION_COLUMNS, AtmOutputs,
                                        colorize, demo_panel_figure,
                                        figure_to_rgb, loss_terms,
                                        loss_terms_figure, mask_grid_figure,
                                        output_titles, prediction_figure,
                                        read_scalars)

# yapf: enable

META = SegVitShapesDataset.METAINFO
NAMES, PALETTE = list(META['classes']), [list(c) for c in META['palette']]


def _rows(num=2, size=32, ignored=True):
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(num):
        image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        gt = rng.integers(0, len(NAMES), (size, size))
        pred = rng.integers(0, len(NAMES), (size, size))
        if ignored:
            gt[:4] = 255
        rows.append((image, gt, pred))
    return rows


def _rgb(colour):
    return tuple(round(255 * v) for v in to_rgb(colour))


def test_import_of_the_package_does_not_import_plotting():
    out = subprocess.run([
        sys.executable, '-c', 'import sys, mmseg_segvit; '
        'print("matplotlib" in sys.modules, '
        '"mmseg_segvit.visualization" in sys.modules)'
    ],
                         capture_output=True,
                         text=True,
                         check=True).stdout.split()
    assert out[-2:] == ['False', 'False']


def test_colorize_uses_the_palette_and_stripes_ignored_pixels():
    label = np.array([[0, 1], [11, 255]])
    picture = colorize(label, PALETTE)
    assert picture.dtype == np.uint8 and picture.shape == (2, 2, 3)
    assert picture[0, 0].tolist() == PALETTE[0]
    assert picture[0, 1].tolist() == PALETTE[1]
    assert picture[1, 0].tolist() == PALETTE[11]
    assert tuple(picture[1, 1]) in IGNORE_COLOURS
    with pytest.raises(ValueError, match='at most 255 classes'):
        colorize(label, [[0, 0, 0]] * 256)


@pytest.mark.parametrize(
    'palette',
    [
        PALETTE,
        # a palette holding black, white and grey: stripes still stand out
        [[0, 0, 0], [255, 255, 255], [150, 150, 150]],
    ])
def test_ignored_pixels_are_a_pattern_no_class_colour_matches(palette):
    label = np.zeros((12, 12), np.uint8)
    label[:, 6:] = 255
    picture = colorize(label, palette)
    ignored = {tuple(c) for c in picture[:, 6:].reshape(-1, 3)}
    # two colours alternating: never one flat colour, and never black
    assert ignored == set(IGNORE_COLOURS)
    assert (0, 0, 0) not in ignored
    assert (picture[:, 6:] != picture[0, 6]).any(axis=-1).any()
    assert {tuple(c)
            for c in picture[:, :6].reshape(-1, 3)} == {tuple(palette[0])}


def test_prediction_is_drawn_beside_the_image_with_a_legend():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)
    pred = np.full((32, 48), 3)
    pred[:8] = 11  # class 11: a quarter
    pred[8:10] = 255  # an ignored band
    fig = prediction_figure(image, pred, NAMES, PALETTE)
    left, right = fig.axes
    assert (left.get_title(), right.get_title()) == PREDICTION_COLUMNS
    # the image unchanged, the prediction in palette colours, not blended
    assert (left.get_images()[0].get_array() == image).all()
    drawn = right.get_images()[0].get_array()
    assert (drawn == colorize(pred, PALETTE)).all()
    assert (drawn[12:] == PALETTE[3]).all()
    (legend, ) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == [f'{NAMES[3]} (68.8%)', f'{NAMES[11]} (25.0%)', 'ignored']
    colours = [_rgb(p.get_facecolor()) for p in legend.get_patches()]
    assert colours == [
        tuple(PALETTE[3]),
        tuple(PALETTE[11]), IGNORE_COLOURS[0]
    ]
    assert legend.get_patches()[-1].get_hatch()
    # rendered, the legend colours are in the picture
    picture = figure_to_rgb(fig)
    found = {tuple(c) for c in np.unique(picture.reshape(-1, 3), axis=0)}
    assert {tuple(PALETTE[3]), tuple(PALETTE[11])} <= found
    # no ignored pixel: no 'ignored' entry
    pred[8:10] = 3
    labels = [
        t.get_text() for t in prediction_figure(
            image, pred, NAMES, PALETTE).legends[0].get_texts()
    ]
    assert labels == [f'{NAMES[3]} (75.0%)', f'{NAMES[11]} (25.0%)']
    with pytest.raises(ValueError, match='one size'):
        prediction_figure(image, pred[:16], NAMES, PALETTE)


def test_demo_panel_has_column_titles_and_a_legend_in_palette_colours():
    rows = _rows()
    fig = demo_panel_figure(rows, NAMES, PALETTE)
    axes = fig.axes
    assert len(axes) == 2 * 3
    assert tuple(ax.get_title() for ax in axes[:3]) == DEMO_COLUMNS
    assert all(ax.get_title() == '' for ax in axes[3:])
    # the pictures are the image and the colourised labels, unchanged
    image, gt, pred = rows[1]
    assert (axes[3].get_images()[0].get_array() == image).all()
    assert (axes[4].get_images()[0].get_array() == colorize(gt, PALETTE)).all()
    assert (axes[5].get_images()[0].get_array() == colorize(pred,
                                                            PALETTE)).all()
    (legend, ) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == NAMES + ['ignored']
    colours = [_rgb(p.get_facecolor()) for p in legend.get_patches()]
    assert colours == [tuple(c) for c in PALETTE] + [IGNORE_COLOURS[0]]
    assert legend.get_patches()[-1].get_hatch()


def test_demo_panel_render_shows_the_legend_colours():
    rows = _rows(ignored=False)
    fig = demo_panel_figure(rows, NAMES, PALETTE)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == NAMES
    picture = figure_to_rgb(fig)
    assert picture.dtype == np.uint8 and picture.ndim == 3
    height, width = picture.shape[:2]
    assert width > 3 * 32 and height > 2 * 32
    # the legend (below the pictures) holds every class colour exactly
    legend = picture[int(height * 0.8):].reshape(-1, 3)
    found = {tuple(c) for c in np.unique(legend, axis=0)}
    assert {tuple(c) for c in PALETTE} <= found
    with pytest.raises(ValueError, match="at least one row"):
        demo_panel_figure([], NAMES, PALETTE)


def _outputs(num_outputs=3, num_classes=12, size=32):
    torch.manual_seed(0)
    return AtmOutputs(
        torch.rand(num_outputs, num_classes, num_classes + 1).softmax(-1),
        torch.rand(num_outputs, num_classes, size, size),
        torch.rand(num_classes, size, size))


@pytest.mark.parametrize('mask_mode, titles', [
    ('cumulative', ['stage 1', 'stages 1-2', 'stages 1-3']),
    ('per_layer', ['layer 1', 'layer 2', 'layer 3']),
])
def test_mask_grid_labels_rows_and_columns(mask_mode, titles):
    assert output_titles(3, mask_mode) == titles
    image, _, pred = _rows(1, ignored=False)[0]
    pred[:] = 2
    pred[:8] = 5  # class 5: a quarter of the pixels, class 2 the rest
    outputs = _outputs()
    fig = mask_grid_figure(image, outputs, [2, 5], NAMES, PALETTE, pred,
                           mask_mode)
    grid = np.array(fig.axes[:2 * 5], dtype=object).reshape(2, 5)
    assert [ax.get_title() for ax in grid[0, 1:]] == titles + ['class score']
    for row, (c, area) in enumerate([(2, '75.0%'), (5, '25.0%')]):
        label = grid[row, 0]
        texts = [t.get_text() for t in label.texts]
        assert texts[0] == NAMES[c] and texts[1].startswith(area)
        (swatch, ) = label.patches
        assert _rgb(swatch.get_facecolor()) == tuple(PALETTE[c])
        probs = [ax.get_xlabel() for ax in grid[row, 1:4]]
        assert probs == [
            f'p = {float(outputs.cls_prob[j, c, c]):.2f}' for j in range(3)
        ]
    # no text leaves the figure (the old grid cut rotated labels)
    fig.canvas.draw()
    box = fig.bbox
    renderer = fig.canvas.get_renderer()
    for ax in grid[:, 0]:
        for text in ax.texts:
            extent = text.get_window_extent(renderer)
            assert box.x0 <= extent.x0 and extent.x1 <= box.x1
    picture = figure_to_rgb(fig)
    assert picture.dtype == np.uint8 and picture.shape[1] > picture.shape[0]


def _records(num_outputs=3, steps=(50, 100)):
    records = []
    for step in steps:
        record = dict(lr=0.001, step=step, **{'decode.acc_seg': 80.0})
        total = 0.0
        for kind, base in (('loss_ce', 0.1), ('loss_mask', 0.2), ('loss_dice',
                                                                  0.3)):
            for i in range(num_outputs):
                key = (f'decode.{kind}' if i == num_outputs -
                       1 else f'decode.{kind}_{i}')
                record[key] = base * (i + 1) / step
                total += record[key]
        record['loss'] = total
        records.append(record)
    return records


def test_loss_terms_sum_every_output_of_each_kind(tmp_path):
    records = _records()
    path = tmp_path / 'scalars.json'
    # mmengine also logs validation records, without a loss
    path.write_text('\n'.join(json.dumps(r) for r in records) +
                    '\n{"mIoU": 50.0, "step": 100}\n')
    assert read_scalars(str(path)) == records
    steps, total, terms = loss_terms(records)
    assert steps.tolist() == [50, 100]
    assert list(terms) == [
        'decode.loss_ce', 'decode.loss_mask', 'decode.loss_dice'
    ]
    assert terms['decode.loss_mask']['keys'] == [
        'decode.loss_mask_0', 'decode.loss_mask_1', 'decode.loss_mask'
    ]
    np.testing.assert_allclose(terms['decode.loss_ce']['values'],
                               [0.6 / 50, 0.6 / 100])
    np.testing.assert_allclose(sum(t['values'] for t in terms.values()), total)
    fig = loss_terms_figure(records)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels == [
        'loss (total) = sum of the terms below', 'decode.loss_ce (3 outputs)',
        'decode.loss_mask (3 outputs)', 'decode.loss_dice (3 outputs)'
    ]


def test_plot_losses_command(tmp_path, capsys):
    path = tmp_path / 'scalars.json'
    path.write_text('\n'.join(json.dumps(r) for r in _records()))
    out = tmp_path / 'plots' / 'loss.png'
    plot_losses.main([str(path), str(out)])
    import cv2
    picture = cv2.imread(str(out))
    assert picture is not None and picture.std() > 10
    assert f'wrote {out}' in capsys.readouterr().out
    bad = tmp_path / 'val.json'
    bad.write_text('{"mIoU": 50.0, "step": 100}\n')
    with pytest.raises(SystemExit, match='no training record'):
        plot_losses.main([str(bad), str(out)])
    with pytest.raises(SystemExit, match='No such file'):
        plot_losses.main([str(tmp_path / 'missing.json'), str(out)])
