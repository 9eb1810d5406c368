# MMSeg's runtime, with exact resume: RNGStateHook also saves and restores
# the model's random state (dropout, drop-path) with each checkpoint.
_base_ = ['mmseg::_base_/default_runtime.py']
custom_hooks = [dict(type='RNGStateHook')]
