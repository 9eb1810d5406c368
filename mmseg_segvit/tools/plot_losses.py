"""Plot the training loss and the terms it is the sum of.

``python -m mmseg_segvit.tools.plot_losses SCALARS_JSON OUT.png``

SCALARS_JSON is a training run's ``WORK_DIR/<time>/vis_data/scalars.json``.
The total ``loss`` is drawn with one curve per kind of term
(``decode.loss_ce``, ``decode.loss_mask``, ``decode.loss_dice``), each
summed over the outputs ATMLoss supervises, so the curves add up to the
total (see :mod:`mmseg_segvit.visualization.loss_curves`). MMSeg's
``analyze_logs`` draws chosen keys only, and would leave the earlier
outputs' terms out.
"""
import argparse
import os
import os.path as osp
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('scalars', help='vis_data/scalars.json of a run')
    parser.add_argument('out', help='PNG file to write')
    parser.add_argument('--title', default='training loss')
    args = parser.parse_args(argv)

    import cv2

    from mmseg_segvit.visualization import (figure_to_rgb, loss_terms_figure,
                                            read_scalars)
    try:
        records = read_scalars(args.scalars)
    except (OSError, ValueError) as err:
        raise SystemExit(f'error: {err}')
    picture = figure_to_rgb(loss_terms_figure(records, args.title))
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    cv2.imwrite(args.out, picture[..., ::-1])
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
