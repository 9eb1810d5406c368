"""RNGStateHook: resume with the random state of the interrupted run."""
from typing import List, Optional

import torch
from mmengine import dist
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmseg.registry import HOOKS

__all__ = ['RNGStateHook']

DataBatch = Optional[dict]


def _rng_state() -> dict:
    state = dict(torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save torch's random state in checkpoints and restore it on resume.

    mmengine's resume restores weights, optimizer, schedulers and the data
    order (the loop replays the sampler), but not the random generator of
    the model, so dropout and drop-path masks after a resume differ from
    those of the uninterrupted run and the losses drift apart. This hook
    stores the torch (and CUDA) generator state of every process under
    ``checkpoint['rng_state']`` and sets it again right before the first
    iteration after a resume, which makes a resumed run repeat the losses
    of an uninterrupted one (same seed, same number of processes).

    The states are plain byte tensors, so checkpoints stay loadable with
    ``weights_only=True``.
    """
    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._pending: Optional[List[dict]] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Gather every process's state (collective: all ranks call it)."""
        state = _rng_state()
        if dist.get_world_size() > 1:
            checkpoint['rng_state'] = dist.all_gather_object(state)
        else:
            checkpoint['rng_state'] = [state]

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the saved states until training restarts."""
        self._pending = checkpoint.get('rng_state')

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: DataBatch = None) -> None:
        """Restore the state once, after resume and the data replay."""
        if self._pending is None:
            return
        states, self._pending = self._pending, None
        if runner.iter == 0:  # load_from (fine-tuning), not a resume
            return
        rank, world_size = dist.get_rank(), dist.get_world_size()
        if len(states) != world_size:
            print_log(
                f'RNGStateHook: the checkpoint holds the random state of '
                f'{len(states)} processes, this run has {world_size}; '
                'random state not restored',
                logger='current',
                level=30)
            return
        # Runner.resume loads the checkpoint onto the training device (its
        # map_location is get_device(): 'cuda' where there is a GPU), and
        # the generators take their states as CPU byte tensors only
        torch.set_rng_state(states[rank]['torch'].cpu())
        cuda = states[rank].get('cuda')
        if cuda is not None and torch.cuda.is_available():
            if len(cuda) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
