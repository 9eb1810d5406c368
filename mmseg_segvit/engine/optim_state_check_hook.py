"""OptimStateCheckHook: refuse a resumed optimizer state that does not fit
the model's parameters."""
from typing import Dict, List

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS
from torch import Tensor

__all__ = ['OptimStateCheckHook']


@HOOKS.register_module()
class OptimStateCheckHook(Hook):
    """Check, before the first step after ``--resume``, that the restored
    optimizer state has the shapes of the parameters it belongs to.

    torch's ``Optimizer.load_state_dict`` matches saved states to
    parameters by position and checks no shape. A run resumed with another
    crop loads its weights with the position tables resized
    (:mod:`mmseg_segvit.models.backbones.vit_loading`), but AdamW's moments
    of those tables keep the checkpoint's length, and the first step would
    stop inside torch ("The size of tensor a (17) must match the size of
    tensor b (49)"). This hook names the parameters instead and says what
    to do.
    """
    priority = 'VERY_LOW'

    def before_train(self, runner) -> None:
        """Raises ValueError: a state tensor of another shape than its
        parameter (named)."""
        if not getattr(runner, '_resume', False):
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        names: Dict[int, str] = {id(p): n for n, p in model.named_parameters()}
        wrapper = runner.optim_wrapper
        wrappers = wrapper.values() if hasattr(wrapper,
                                               'values') else [wrapper]
        wrong: List[str] = []
        for item in wrappers:
            optimizer = getattr(item, 'optimizer', None)
            if optimizer is None:
                continue
            for param, state in optimizer.state.items():
                for key, value in state.items():
                    if isinstance(value, Tensor) and value.dim() > 0 \
                            and value.shape != param.shape:
                        wrong.append(f'{names.get(id(param), "?")} ({key} '
                                     f'{tuple(value.shape)}, parameter '
                                     f'{tuple(param.shape)})')
                        break
        if wrong:
            raise ValueError(
                'the resumed optimizer state does not fit the model: ' +
                '; '.join(wrong[:4]) + '. The checkpoint comes from a run '
                'with another model size (e.g. another crop: the position '
                'tables were resized on loading, their optimizer state was '
                'not). --resume continues the same run; to train on from '
                'these weights with this config, use load_from (without '
                '--resume)')
