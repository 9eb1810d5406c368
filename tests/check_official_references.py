"""Check the parity references against the official DINOv2 / DINOv3 code.

tests/official_dinov2_reference.py and official_dinov3_reference.py
re-implement the official computation for the parity tests. This script
builds the official models (their repositories' own code, on CPU, without
xFormers) with the same random state dicts and prints the max |diff| of
``get_intermediate_layers(x, n=[1, 3], reshape=True, norm=False)`` at
several sizes (docs/backbones.md lists the figures). It needs checkouts of
facebookresearch/dinov2 and facebookresearch/dinov3 and is no test::

    python tests/check_official_references.py DINOV2_CHECKOUT DINOV3_CHECKOUT
"""
import os.path as osp
import sys
from functools import partial

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from official_dinov2_reference import RefDinoV2, center_padding, randomise
from official_dinov3_reference import RefDinoV3

OUT = [1, 3]
TINY = dict(embed_dim=64, depth=4, num_heads=4)


def compare(name, official, ref, sizes, multiple):
    official.eval(), ref.eval()
    for size in sizes:
        x = torch.randn(1, 3, *size)
        if multiple:
            x = center_padding(x, multiple)
        with torch.no_grad():
            want = official.get_intermediate_layers(
                x, n=OUT, reshape=True, norm=False)
            got = ref.get_intermediate_layers(x, OUT)
        diff = max((a - b).abs().max().item() for a, b in zip(want, got))
        print(f'{name} {size}: max |diff| {diff:.2e}, mean |map| '
              f'{want[-1].abs().mean().item():.2f}')


def main() -> None:
    torch.manual_seed(0)
    sys.path.insert(0, sys.argv[1])
    from dinov2.layers import MemEffAttention
    from dinov2.layers import NestedTensorBlock as Block
    from dinov2.models.vision_transformer import DinoVisionTransformer
    for reg in (False, True):
        ref = RefDinoV2.hub(reg, img_size=518, **TINY)
        randomise(ref, seed=3)
        official = DinoVisionTransformer(
            img_size=518,
            patch_size=14,
            mlp_ratio=4,
            init_values=1.0,
            block_fn=partial(Block, attn_class=MemEffAttention),
            block_chunks=0,
            num_register_tokens=4 if reg else 0,
            interpolate_antialias=reg,
            interpolate_offset=0.0 if reg else 0.1,
            **TINY)
        official.load_state_dict(ref.state_dict(), strict=True)
        compare('dinov2' + ('_reg4' if reg else ''),
                official, ref, [(518, 518), (512, 512), (640, 640), (518, 742),
                                (448, 600)], 14)
    sys.path.insert(0, sys.argv[2])
    from dinov3.models.vision_transformer import DinoVisionTransformer
    ref = RefDinoV3(**TINY)
    randomise(ref, seed=4)
    periods = ref.rope_embed.periods
    periods.copy_(periods.bfloat16().float())
    # the ViT-L hub settings (dinov3/hub/backbones.py)
    official = DinoVisionTransformer(
        img_size=224,
        patch_size=16,
        pos_embed_rope_base=100,
        pos_embed_rope_normalize_coords='separate',
        pos_embed_rope_rescale_coords=2,
        pos_embed_rope_dtype='fp32',
        ffn_ratio=4,
        qkv_bias=True,
        layerscale_init=1e-5,
        norm_layer='layernormbf16',
        ffn_layer='mlp',
        n_storage_tokens=4,
        mask_k_bias=True,
        **TINY)
    official.load_state_dict(ref.state_dict(), strict=True)
    compare('dinov3', official, ref, [(224, 224), (512, 512), (640, 640),
                                      (512, 704)], 0)


if __name__ == '__main__':
    main()
