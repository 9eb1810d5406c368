# SegViT Shrunk on ViT-L/16: the plain ViT-L/16 model with the Shrunk
# changes (./segvit_shrunk-changes_vit-l16.py: QD at layer 8, QU over the
# outputs of layers 7 and 23, the ATM head on the QU map).
_base_ = ['./segvit_vit-l16.py', './segvit_shrunk-changes_vit-l16.py']
model = _base_.shrunk_vit_l16
