# ATMHead as the decode head of a stock MMSeg config (ADE20K, 150 classes).
# A head-swap config lists this file after the stock config in `_base_` and
# replaces the stock decode head with it, adding what its backbone gives:
#   model = dict(decode_head=dict(_base_.atm_head, _delete_=True,
#                                 in_channels=768))
# ATMHead reads the last three of the four backbone (or neck) outputs,
# deepest first; on a 1/4-1/32 pyramid it predicts masks at 1/8. Where the
# first level has parameters of its own (Swin's norm0, MultiLevelNeck's
# convolutions), a config builds only the last three levels and sets
# in_index=[0, 1, 2]: an unused parameter stops DDP training.
atm_head = dict(
    type='ATMHead', in_index=[1, 2, 3], embed_dims=384, num_classes=150)
# The package's run check of a head-swap config (the stock config sets no
# custom_hooks): DatasetCheckHook refuses to start a run whose head
# num_classes and dataset classes differ, or whose label maps cannot be what
# the config says.
custom_hooks = [dict(type='DatasetCheckHook')]
