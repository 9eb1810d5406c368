# MMSeg's runtime, with exact resume: RNGStateHook also saves and restores
# the model's random state (dropout, drop-path) with each checkpoint;
# OptimStateCheckHook refuses by name a resumed optimizer state that does
# not fit the model (a run resumed with another crop); DatasetCheckHook
# refuses to start a run whose head num_classes and dataset classes differ,
# or whose label maps cannot be what the config says (a sample is checked).
_base_ = ['mmseg::_base_/default_runtime.py']
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='OptimStateCheckHook'),
    dict(type='DatasetCheckHook')
]
