"""Training loss curves that show what the plotted total is made of.

mmengine logs the total ``loss`` (the sum of every logged value whose key
contains ``loss``, as ``BaseModel.parse_losses`` sums them) next to each
term. ``ATMLoss`` supervises every output of ``ATMHead`` (one per stage, or
per decoder layer), so its terms come as ``decode.loss_ce`` (last output)
and ``decode.loss_ce_0``, ``decode.loss_ce_1``, ... (earlier outputs).
:func:`loss_terms` adds the outputs of each kind, so that the curves drawn
by :func:`loss_terms_figure` add up to the total they are drawn with.
"""
import json
import re
from collections import OrderedDict
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .panels import new_figure

__all__ = ['read_scalars', 'loss_terms', 'loss_terms_figure']

# an output index: ``_0`` at the end (ATMLoss) or ``.d0.`` inside a key
_OUTPUT_SUFFIX = re.compile(r'_\d+$')
_OUTPUT_PART = re.compile(r'\.d\d+(?=\.)')


def read_scalars(path: str) -> List[dict]:
    """The training records of an mmengine ``vis_data/scalars.json``.

    Args:
        path (str): One JSON object per line, as mmengine's
            ``LocalVisBackend`` writes them.

    Returns:
        list[dict]: The records that carry a total ``loss`` (training
        iterations), in file order.

    Raises:
        ValueError: If no record has a ``loss`` (not a training log).
    """
    records = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                record = json.loads(line)
                if 'loss' in record:
                    records.append(record)
    if not records:
        raise ValueError(f'{path} has no training record with a "loss" '
                         'value: give the scalars.json of a training run '
                         '(WORK_DIR/<time>/vis_data/scalars.json)')
    return records


def loss_terms(
        records: Sequence[dict]
) -> Tuple[np.ndarray, np.ndarray, Dict[str, dict]]:
    """Group the logged loss terms by kind, summed over the outputs.

    Args:
        records (Sequence[dict]): From :func:`read_scalars`.

    Returns:
        tuple: ``steps`` (N,), the logged total ``loss`` (N,) and, per kind
        (``decode.loss_ce``, ``decode.loss_mask``, ...; an auxiliary head's
        ``aux.loss_ce`` on its own), ``dict(values=(N,) array, keys=[the
        logged keys summed])``. The kinds add up to the total up to the
        rounding of the log.
    """
    groups: Dict[str, List[str]] = OrderedDict()
    for key in records[0]:
        if key == 'loss' or 'loss' not in key:
            continue
        kind = _OUTPUT_PART.sub('', _OUTPUT_SUFFIX.sub('', key))
        groups.setdefault(kind, []).append(key)
    steps = np.array([r.get('step', i) for i, r in enumerate(records)])
    total = np.array([r['loss'] for r in records], float)
    terms = OrderedDict()
    for kind, keys in groups.items():
        values = np.array([sum(r.get(k, 0.0) for k in keys) for r in records],
                          float)
        terms[kind] = dict(values=values, keys=keys)
    return steps, total, terms


def loss_terms_figure(records: Sequence[dict], title: str = 'training loss'):
    """The total loss and its terms, each summed over the outputs.

    Args:
        records (Sequence[dict]): From :func:`read_scalars`.
        title (str): The plot's title.

    Returns:
        matplotlib.figure.Figure: The legend names each kind with
        the number of logged terms it sums (``decode.loss_mask (3
        outputs)``), so that the drawn terms add up to the drawn total.
    """
    steps, total, terms = loss_terms(records)
    fig = new_figure(7.0, 4.2)
    ax = fig.add_subplot()
    ax.plot(
        steps,
        total,
        color='black',
        linewidth=2,
        label='loss (total) = sum of the terms below')
    for kind, term in terms.items():
        count = len(term['keys'])
        suffix = f' ({count} outputs)' if count > 1 else ''
        ax.plot(steps, term['values'], label=f'{kind}{suffix}')
    ax.set_xlabel('iteration')
    ax.set_ylabel('loss (mean over the logging interval)')
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    return fig
