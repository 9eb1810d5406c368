"""Pictures of SegViT: per-output ATM masks, demo panels, loss curves.

Imported on demand (``import mmseg_segvit`` does not import it, nor
matplotlib); the command-line tools ``mmseg_segvit.tools.atm_masks``,
``visualize_demo`` and ``plot_losses`` are thin wrappers around it.
"""
from .atm_outputs import AtmOutputs, atm_outputs, output_titles, rank_classes
from .loss_curves import loss_terms, loss_terms_figure, read_scalars
from .panels import (DEMO_COLUMNS, IGNORE_COLOURS, PREDICTION_COLUMNS,
                     colorize, demo_panel_figure, figure_to_rgb, ignored_patch,
                     legend_patches, mask_grid_figure, new_figure,
                     prediction_figure)
from .pictures import demo_rows, save_atm_pictures

__all__ = [
    'AtmOutputs', 'atm_outputs', 'output_titles', 'rank_classes', 'loss_terms',
    'loss_terms_figure', 'read_scalars', 'DEMO_COLUMNS', 'IGNORE_COLOURS',
    'PREDICTION_COLUMNS', 'colorize', 'demo_panel_figure', 'prediction_figure',
    'mask_grid_figure', 'figure_to_rgb', 'ignored_patch', 'legend_patches',
    'new_figure', 'demo_rows', 'save_atm_pictures'
]
