# MMSeg's runtime, with exact resume: RNGStateHook also saves and restores
# the model's random state (dropout, drop-path) with each checkpoint, and
# OptimStateCheckHook refuses by name a resumed optimizer state that does
# not fit the model (a run resumed with another crop).
_base_ = ['mmseg::_base_/default_runtime.py']
custom_hooks = [dict(type='RNGStateHook'), dict(type='OptimStateCheckHook')]
