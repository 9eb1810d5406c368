"""Runner hooks."""
from .dataset_check_hook import DatasetCheckHook
from .rng_state_hook import RNGStateHook

__all__ = ['DatasetCheckHook', 'RNGStateHook']
