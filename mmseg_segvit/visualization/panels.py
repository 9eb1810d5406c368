"""Labelled pictures of SegViT's predictions and ATM masks (matplotlib).

Every function draws on its own ``matplotlib.figure.Figure`` with the Agg
canvas and returns it (:func:`figure_to_rgb` renders it to an RGB array): no
pyplot state and no global backend change, so they run in scripts, tests and
notebooks alike. Colours come from the dataset's palette
(``dataset_meta['palette']``, RGB).
"""
from typing import Optional, Sequence, Tuple

import numpy as np

from .atm_outputs import AtmOutputs, output_titles

__all__ = [
    'colorize', 'legend_patches', 'ignored_patch', 'new_figure',
    'figure_to_rgb', 'demo_panel_figure', 'prediction_figure',
    'mask_grid_figure', 'DEMO_COLUMNS', 'PREDICTION_COLUMNS', 'IGNORE_COLOURS'
]

#: Column titles of :func:`demo_panel_figure`.
DEMO_COLUMNS = ('image', 'ground truth', 'prediction')
#: Column titles of :func:`prediction_figure`.
PREDICTION_COLUMNS = ('image', 'prediction')
#: Pixels outside the palette (the ignore index 255) are drawn as diagonal
#: stripes of these two RGB colours: a pattern, so no class colour (black
#: and white included) can be taken for it.
IGNORE_COLOURS = ((255, 255, 255), (150, 150, 150))
#: Width of one ignore stripe, in pixels.
_STRIPE = 3


def colorize(label: np.ndarray,
             palette: Sequence[Sequence[int]]) -> np.ndarray:
    """Colour a label map with the palette.

    Args:
        label (np.ndarray): Class indices, shape (H, W), values 0-255.
        palette (Sequence[Sequence[int]]): RGB colour of each class.

    Returns:
        np.ndarray: (H, W, 3) uint8 RGB; values outside the palette (the
        ignore index) get diagonal stripes of :data:`IGNORE_COLOURS`.

    Raises:
        ValueError: If the palette has more than 255 colours.
    """
    if len(palette) > 255:
        raise ValueError(f'colorize takes at most 255 classes (255 is the '
                         f'ignore index), got a palette of {len(palette)}')
    table = np.zeros((256, 3), np.uint8)
    table[:len(palette)] = np.asarray(palette, np.uint8).reshape(-1, 3)
    label = label.astype(np.uint8)
    picture = table[label]
    ignored = label >= len(palette)
    if ignored.any():
        rows, cols = np.indices(label.shape)
        stripes = np.asarray(IGNORE_COLOURS,
                             np.uint8)[(rows + cols) // _STRIPE % 2]
        picture[ignored] = stripes[ignored]
    return picture


def ignored_patch():
    """Legend entry ``ignored``: white with grey stripes, as
    :func:`colorize` draws the ignore index."""
    from matplotlib.patches import Patch
    return Patch(
        facecolor=np.asarray(IGNORE_COLOURS[0], float) / 255,
        hatch='////',
        edgecolor=np.asarray(IGNORE_COLOURS[1], float) / 255,
        linewidth=0.5,
        label='ignored')


def legend_patches(classes: Sequence[int],
                   names: Sequence[str],
                   palette: Sequence[Sequence[int]],
                   labels: Optional[Sequence[str]] = None) -> list:
    """Legend entries (filled squares) in the palette's colours.

    Args:
        classes (Sequence[int]): The classes, in legend order.
        names (Sequence[str]): Class names of the dataset.
        palette (Sequence[Sequence[int]]): RGB colour of each class.
        labels (Sequence[str], optional): Texts to use instead of the
            names, one per class.

    Returns:
        list[matplotlib.patches.Patch]: For ``Figure.legend(handles=...)``.
    """
    from matplotlib.patches import Patch
    texts = labels if labels is not None else [names[c] for c in classes]
    return [
        Patch(
            facecolor=np.asarray(palette[c], float) / 255,
            edgecolor='black',
            linewidth=0.5,
            label=text) for c, text in zip(classes, texts)
    ]


def new_figure(width: float, height: float, dpi: int = 100):
    """A figure with its own Agg canvas and constrained layout (no label is cut
    at the border)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=dpi, layout='constrained')
    FigureCanvasAgg(fig)
    return fig


def figure_to_rgb(fig) -> np.ndarray:
    """Render a figure: (H, W, 3) uint8 RGB."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def demo_panel_figure(rows: Sequence[Tuple[np.ndarray, np.ndarray,
                                           np.ndarray]],
                      names: Sequence[str],
                      palette: Sequence[Sequence[int]],
                      cell: float = 1.8):
    """Image | ground truth | prediction, with titles and a class legend.

    Args:
        rows (Sequence[tuple]): One ``(image, gt, pred)`` per row: the image
            RGB uint8 (H, W, 3), the ground truth and prediction (H, W)
            class indices (255: ignored).
        names (Sequence[str]): Class names of the dataset.
        palette (Sequence[Sequence[int]]): RGB colour of each class.
        cell (float): Size of one picture in inches (100 dpi). Default: 1.8.

    Returns:
        matplotlib.figure.Figure: The columns are titled
        :data:`DEMO_COLUMNS`; the legend lists every class of the palette
        in its colour, and ``ignored`` (:func:`ignored_patch`) when a
        ground truth has ignored pixels.
    """
    if not rows:
        raise ValueError('demo_panel_figure needs at least one row')
    height, width = rows[0][0].shape[:2]
    aspect = width / height
    ncol = min(len(names), 6)
    legend_rows = -(-len(names) // ncol)
    fig = new_figure(cell * aspect * 3 + 0.3,
                     cell * len(rows) + 0.35 + 0.3 * legend_rows)
    axes = fig.subplots(len(rows), 3, squeeze=False)
    has_ignored = False
    for r, (image, gt, pred) in enumerate(rows):
        has_ignored |= bool((gt >= len(palette)).any())
        pictures = (image, colorize(gt, palette), colorize(pred, palette))
        for j, picture in enumerate(pictures):
            ax = axes[r, j]
            ax.imshow(picture, interpolation='nearest')
            _bare(ax)
            if r == 0:
                ax.set_title(DEMO_COLUMNS[j], fontsize=11)
    handles = legend_patches(range(len(names)), names, palette)
    if has_ignored:
        handles.append(ignored_patch())
    fig.legend(
        handles=handles,
        loc='outside lower center',
        ncol=min(len(handles), ncol),
        fontsize=9,
        frameon=False,
        handlelength=1.2,
        columnspacing=1.0)
    return fig


def prediction_figure(image_rgb: np.ndarray,
                      pred: np.ndarray,
                      names: Sequence[str],
                      palette: Sequence[Sequence[int]],
                      cell: float = 3.0):
    """The image and its prediction side by side, with a class legend.

    The prediction is drawn in the palette's colours, not blended with the
    image, so a palette close to the image's own colours cannot be taken
    for the image.

    Args:
        image_rgb (np.ndarray): The image, RGB uint8, shape (H, W, 3).
        pred (np.ndarray): Predicted labels, shape (H, W) (255: ignored).
        names (Sequence[str]): Class names of the dataset.
        palette (Sequence[Sequence[int]]): RGB colour of each class.
        cell (float): Height of one picture in inches (100 dpi).
            Default: 3.0.

    Returns:
        matplotlib.figure.Figure: Two axes titled
        :data:`PREDICTION_COLUMNS` and a legend naming every predicted
        class (largest area first) with its share of the pixels, then
        ``ignored`` (:func:`ignored_patch`) where the prediction has
        pixels outside the palette.

    Raises:
        ValueError: If image and prediction differ in size.
    """
    if image_rgb.shape[:2] != pred.shape:
        raise ValueError(f'the image is {image_rgb.shape[:2]} but the '
                         f'prediction {pred.shape}: draw them at one size')
    height, width = pred.shape
    aspect = max(width / height, 0.5)
    area = np.bincount(pred.ravel().astype(np.int64), minlength=256)
    classes = [
        int(c) for c in np.argsort(-area[:len(palette)], kind='stable')
        if area[c] > 0
    ]
    labels = [
        f'{names[c]} ({100.0 * area[c] / pred.size:.1f}%)' for c in classes
    ]
    handles = legend_patches(classes, names, palette, labels)
    if area[len(palette):].sum() > 0:
        handles.append(ignored_patch())
    ncol = -(-len(handles) // 12)  # at most 12 rows
    fig = new_figure(cell * aspect * 2 + 1.6 * ncol + 0.3, cell + 0.5)
    axes = fig.subplots(1, 2, squeeze=False)[0]
    for ax, picture, title in zip(axes, (image_rgb, colorize(pred, palette)),
                                  PREDICTION_COLUMNS):
        ax.imshow(picture, interpolation='nearest')
        ax.set_title(title, fontsize=11)
        _bare(ax)
    fig.legend(
        handles=handles,
        loc='outside right center',
        ncol=ncol,
        fontsize=9,
        frameon=False,
        handlelength=1.2)
    return fig


def mask_grid_figure(image_rgb: np.ndarray,
                     outputs: AtmOutputs,
                     classes: Sequence[int],
                     names: Sequence[str],
                     palette: Sequence[Sequence[int]],
                     pred: np.ndarray,
                     mask_mode: str = 'cumulative',
                     alpha: float = 0.6):
    """The ATM masks of some classes as a labelled grid.

    One row per class: a colour swatch with the class name and its share of
    the predicted pixels, then ``sigmoid(mask)`` of every output over the
    image (titled by :func:`output_titles`, with the query's class
    probability ``p`` below) and the final class score. A colour bar gives
    the 0-1 scale of the heat maps.

    Args:
        image_rgb (np.ndarray): The image, RGB, shape (H, W, 3).
        outputs (AtmOutputs): From :func:`atm_outputs`.
        classes (Sequence[int]): One row per class.
        names (Sequence[str]): Class names of the dataset.
        palette (Sequence[Sequence[int]]): RGB colour of each class.
        pred (np.ndarray): Predicted labels, shape (H, W), for the area.
        mask_mode (str): The head's ``mask_mode``, for the column titles.
        alpha (float): Opacity of the mask heat map. Default: 0.6.

    Returns:
        matplotlib.figure.Figure: Axes ``[r][0]`` hold the row labels
        (swatch, name, area), ``[r][1:]`` the heat maps.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    num_outputs = outputs.masks.shape[0]
    titles = output_titles(num_outputs, mask_mode) + ['class score']
    rows, cols = len(classes), num_outputs + 1
    height, width = image_rgb.shape[:2]
    aspect = max(width / height, 0.5)
    cell = 2.2
    label_width = 1.6
    fig = new_figure(label_width + cell * aspect * cols + 0.9,
                     cell * rows + 0.8)
    axes = fig.subplots(
        rows,
        cols + 1,
        squeeze=False,
        gridspec_kw=dict(width_ratios=[label_width / (cell * aspect)] +
                         [1] * cols))
    cmap = colormaps['inferno']
    image = image_rgb.astype(np.float32) / 255
    total = pred.size
    for r, c in enumerate(classes):
        label_ax = axes[r, 0]
        label_ax.set_axis_off()
        label_ax.set_xlim(0, 1)
        label_ax.set_ylim(0, 1)
        label_ax.add_patch(
            Rectangle((0.02, 0.62),
                      0.22 * cell / label_width,
                      0.22,
                      facecolor=np.asarray(palette[c], float) / 255,
                      edgecolor='black',
                      linewidth=0.5))
        area = 100.0 * float((pred == c).sum()) / total
        label_ax.text(
            0.38,
            0.73,
            names[c],
            fontsize=11,
            va='center',
            ha='left',
            weight='bold')
        label_ax.text(
            0.02,
            0.42,
            f'{area:.1f}% of pixels',
            fontsize=9,
            va='center',
            ha='left')
        maps = [outputs.masks[i, c] for i in range(num_outputs)]
        maps.append(outputs.scores[c])
        for j, heat in enumerate(maps):
            heat = heat.cpu().numpy()
            picture = (1 - alpha) * image + alpha * cmap(heat)[..., :3]
            ax = axes[r, j + 1]
            ax.imshow(np.clip(picture, 0, 1))
            _bare(ax)
            if j < num_outputs:
                prob = float(outputs.cls_prob[j, c, c])
                ax.set_xlabel(f'p = {prob:.2f}', fontsize=9)
            else:
                ax.set_xlabel(f'max {heat.max():.2f}', fontsize=9)
            if r == 0:
                ax.set_title(titles[j], fontsize=10)
    fig.colorbar(
        ScalarMappable(Normalize(0, 1), cmap),
        ax=axes[:, 1:].ravel().tolist(),
        shrink=min(1.0, 2.0 / max(rows, 1) + 0.3),
        label='sigmoid(mask) / class score')
    fig.suptitle(
        'ATM masks: sigmoid(query-token similarity) per output; '
        'p = class probability of the query',
        fontsize=10)
    return fig
