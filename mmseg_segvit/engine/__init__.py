"""Runner hooks."""
from .dataset_check_hook import DatasetCheckHook
from .optim_state_check_hook import OptimStateCheckHook
from .rng_state_hook import RNGStateHook

__all__ = ['DatasetCheckHook', 'OptimStateCheckHook', 'RNGStateHook']
