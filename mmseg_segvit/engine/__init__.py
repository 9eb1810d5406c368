"""Runner hooks."""
from .optim_state_check_hook import OptimStateCheckHook
from .rng_state_hook import RNGStateHook

__all__ = ['OptimStateCheckHook', 'RNGStateHook']
