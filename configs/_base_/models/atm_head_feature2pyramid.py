# What a head-swap config whose stock model has a Feature2Pyramid neck (BEiT,
# MAE) adds next to ../_base_/models/atm_head.py (the stock config defines no
# model_wrapper_cfg).
# ATMHead does not read the 1/4 level, so Feature2Pyramid's upsample_4x gets
# no gradient. Feature2Pyramid cannot be built without it (its forward
# needs a 0.25 level whenever 4 is not in `rescales`), so DDP is told to
# look for parameters without a gradient; without this, multi-GPU training
# stops at iteration 2 ("Expected to have finished reduction ...").
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel', find_unused_parameters=True)
