"""Export a SegViT segmentor to ONNX and check it with onnxruntime.

:class:`SegmentorForExport` is the segmentor's whole-image inference as one
module taking a normalised (B, 3, H, W) batch: ``extract_feat``, the decode
head's ``forward`` and :func:`~mmseg_segvit.models.layers.combine` of its
last output at the input size, computed in one piece (``memory_budget(inf)``,
the literal algorithm, no device-dependent bands).

:func:`export_onnx` traces it with torch's TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``), or with the torch.export-based
one where TorchScript cannot keep the sizes dynamic (a dynamic ShrunkViT,
:func:`choose_exporter`); :func:`check_onnx` runs the file
with onnxruntime on CPU and compares it with PyTorch. ``onnx``,
``onnxruntime`` and ``onnxscript`` come with the ``export`` extra
(``pip install mmseg_segvit[export]``).
"""
import contextlib
import warnings
from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..grids import patch_grid
from ..models.layers.memory_plan import memory_budget
from ..typing_utils import Size

__all__ = [
    'SegmentorForExport', 'export_onnx', 'check_onnx', 'OnnxCheck',
    'trace_shape', 'check_shapes', 'choose_exporter', 'check_exportable',
    'pad_to_patches', 'check_dynamic_inputs', 'OUTPUTS', 'ORDERS', 'EXPORTERS',
    'STATIC_ONLY_BACKBONES', 'no_mha_fastpath'
]

OUTPUTS = ('scores', 'labels')
ORDERS = ('faithful', 'fast')
EXPORTERS = ('auto', 'torchscript', 'dynamo')


class SegmentorForExport(nn.Module):
    """A segmentor's whole-image inference: image batch -> scores or labels.

    Args:
        segmentor (nn.Module): An mmseg ``EncoderDecoder`` with an ATMHead
            (or a head with the same ``forward`` output).
        output (str): ``'scores'``: per-class scores (B, K, H, W);
            ``'labels'``: their arg-max (B, H, W). Default: 'scores'.
        order (str, optional): ``'faithful'`` (resize the masks, then
            combine, the official order) or ``'fast'`` (combine near the
            mask grid, then resize the scores); see :func:`combine`.
            Default: the head's own (``fast_inference``), what its
            ``predict`` computes.
    """

    def __init__(self,
                 segmentor: nn.Module,
                 output: str = 'scores',
                 order: Optional[str] = None) -> None:
        super().__init__()
        if order is None:
            order = 'fast' if getattr(segmentor.decode_head, 'fast_inference',
                                      False) else 'faithful'
        if output not in OUTPUTS:
            raise ValueError(
                f'output must be one of {OUTPUTS}, got {output!r}')
        if order not in ORDERS:
            raise ValueError(f'order must be one of {ORDERS}, got {order!r}')
        self.segmentor = segmentor
        self.output = output
        self.order = order

    def forward(self, inputs: Tensor) -> Tensor:
        """Args: inputs (Tensor): normalised images, (B, 3, H, W), of any
        size: one that is no multiple of the patch is padded as the
        backbone's patch embedding pads it (:func:`pad_to_patches`)."""
        head = self.segmentor.decode_head
        feats = self.segmentor.extract_feat(
            pad_to_patches(inputs, self.segmentor.backbone))
        outputs = head.forward(feats)
        with memory_budget(float('inf')):
            return head.combine_outputs(
                outputs,
                inputs.shape[-2:],
                order=self.order,
                output=self.output)


def pad_to_patches(inputs: Tensor, backbone: nn.Module) -> Tensor:
    """Pad images as the backbone's patch embedding would, in graph ops.

    mmseg's ``PatchEmbed`` pads an input that is no multiple of the patch
    (``AdaptivePadding``: zeros at the bottom and right for
    ``padding='corner'``, split for ``'same'``), with amounts computed in
    Python: a traced graph would keep the amounts of the example (none
    for a multiple of the patch) and give other patch grids than PyTorch
    at other sizes. Here the amounts are computed from the traced size, so
    the graph pads every size as PyTorch does, and the patch embedding
    then always sees a multiple of the patch. Backbones without such a
    padding get ``inputs`` unchanged.

    Args:
        inputs (Tensor): (B, C, H, W).
        backbone (nn.Module): The segmentor's backbone.

    Returns:
        Tensor: (B, C, H', W'), as the patch embedding would pad it.
    """
    embed = getattr(backbone, 'patch_embed', None)
    # mmseg's PatchEmbed calls it adap_padding, mmcv's adaptive_padding
    padding = getattr(embed, 'adap_padding', None) or getattr(
        embed, 'adaptive_padding', None)
    if padding is None:
        return inputs
    pads = []
    for size, kernel, stride, dilation in zip(inputs.shape[-2:],
                                              padding.kernel_size,
                                              padding.stride,
                                              padding.dilation):
        # AdaptivePadding.get_pad_shape, in ops a trace records
        steps = (size + stride - 1) // stride
        pads.append(
            _sym_max((steps - 1) * stride + (kernel - 1) * dilation + 1 - size,
                     0))
    pad_h, pad_w = pads
    if padding.padding == 'corner':
        return F.pad(inputs, [0, pad_w, 0, pad_h])
    return F.pad(
        inputs,
        [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])


def _sym_max(value, low: int):
    """``max(value, low)`` that a TorchScript trace or torch.export keeps
    symbolic."""
    if isinstance(value, Tensor):
        return torch.clamp(value, min=low)
    return torch.sym_max(value, low)


def _patch(segmentor: nn.Module) -> Tuple[int, Optional[Size]]:
    """Patch size and trained image size of the backbone (ViT-like)."""
    backbone = segmentor.backbone
    patch = getattr(backbone, 'patch_size', 16)
    patch = int(patch[0] if isinstance(patch, Sequence) else patch)
    img_size = getattr(backbone, 'img_size', None)
    if isinstance(img_size, int):
        img_size = (img_size, img_size)
    return patch, (tuple(int(s) for s in img_size) if img_size else None)


def trace_shape(segmentor: nn.Module, shape: Size) -> Size:
    """The example size a ``dynamic`` export is traced at.

    Python branches in the backbone (mmseg's ``_pos_embeding``) and in QU
    (``queries``) resize the position embedding and the QU queries only when
    the patch grid differs from the trained one, and a trace records the branch
    it took. So a dynamic export is traced on a grid other than the trained one
    on both axes (``shape`` where it already is; else one patch more in height,
    two in width): the resizes are then in the graph, and at the trained grid
    they are identities. A ``shape`` off the patch grid is first rounded up to
    it.
    """
    patch, native = _patch(segmentor)
    h, w = (-(-int(s) // patch) * patch for s in shape)
    if native is None:
        return h, w
    grid, trained = patch_grid((h, w), patch), patch_grid(native, patch)
    if grid[0] == trained[0]:
        h += patch
    if grid[1] == trained[1]:
        w += 2 * patch
    return h, w


def check_shapes(segmentor: nn.Module, shape: Size,
                 dynamic: bool) -> List[Tuple[int, int, int]]:
    """(B, H, W) sizes :func:`check_onnx` runs.

    A static export takes one size: ``shape``. A dynamic one is checked at
    sizes far from the traced one, where anything the trace recorded as a
    constant shows: the traced size (batch 1); half of ``shape`` (batch 2,
    multiples of the patch); about twice ``shape``, non-square; and a non-
    square size off the patch grid (e.g. 97x131 for 128x128, padded by the
    graph as the patch embedding pads it).
    """
    if not dynamic:
        return [(1, *shape)]
    patch, _ = _patch(segmentor)
    h, w = shape
    traced = trace_shape(segmentor, shape)
    half = (max(patch,
                h // 2 // patch * patch), max(patch, w // 2 // patch * patch))
    return [(1, *traced), (2, *half), (1, 2 * h, 2 * w + 2 * patch),
            (1, h * 3 // 4 + 1, w + 3)]


@contextlib.contextmanager
def no_mha_fastpath() -> Iterator[None]:
    """``nn.MultiheadAttention`` without its fused inference kernel
    (``aten::_native_multi_head_attention`` has no ONNX export): the same
    computation in plain ops."""
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


def choose_exporter(segmentor: nn.Module,
                    dynamic: bool,
                    exporter: str = 'auto') -> str:
    """``'torchscript'`` or ``'dynamo'`` for ``exporter='auto'``.

    A backbone with a ``check_export(dynamic, exporter)`` method
    (:class:`~mmseg_segvit.models.backbones.TimmViT`) decides itself.
    Otherwise TorchScript (``torch.onnx.export(..., dynamo=False)``, quick)
    except for a dynamic ShrunkViT: TorchScript records QU's query count
    (the traced patch grid) as a constant in ``nn.MultiheadAttention``'s
    reshapes, so that file would run at the traced size only; torch.export
    keeps it symbolic.

    Raises:
        ValueError: ``exporter='torchscript'`` for a dynamic ShrunkViT, an
            export the backbone refuses, or an unknown exporter.
    """
    if exporter not in EXPORTERS:
        raise ValueError(
            f'exporter must be one of {EXPORTERS}, got {exporter!r}')
    backbone_choice = getattr(segmentor.backbone, 'check_export', None)
    if backbone_choice is not None:  # TimmViT: what its timm model allows
        return backbone_choice(dynamic, exporter)
    shrunk = hasattr(segmentor.backbone, 'qu')
    if exporter == 'auto':
        return 'dynamo' if dynamic and shrunk else 'torchscript'
    if exporter == 'torchscript' and dynamic and shrunk:
        raise ValueError(
            'a dynamic ShrunkViT needs the dynamo exporter: torch\'s '
            'TorchScript exporter records the QU query count (the traced '
            "patch grid) as a constant in nn.MultiheadAttention's reshapes, "
            'so the file would only run at the traced size')
    return exporter


#: Backbones whose dynamic export would not give PyTorch's result at other
#: sizes, and why (checked with the drop-in configs of ``atm_head_swap``).
STATIC_ONLY_BACKBONES = {
    'SwinTransformer':
    'it pads its windows by amounts computed in Python, '
    'which a trace keeps from the example (the graph is off by 1.8e-3 at '
    'a size off its window grid)',
    'BEiT':
    'its relative position tables fit its img_size only (PyTorch '
    'itself runs at that size only)',
    'MAE':
    'its relative position tables fit its img_size only (PyTorch '
    'itself runs at that size only)',
}


def check_exportable(segmentor: nn.Module,
                     shape: Size,
                     dynamic: bool = False) -> None:
    """Refuse, before tracing, what the exported graph would not compute as
    PyTorch does.

    The graph is the segmentor's whole-image inference of one batch
    (:class:`SegmentorForExport`). Refused by name:

    * ``model.test_cfg.mode='slide'`` (the paper configs): PyTorch then
      predicts window by window, which a graph of one forward does not;
      export with ``--cfg-options model.test_cfg.mode=whole`` to get the
      whole-image inference, knowing that it differs from ``mim test``.
    * a decode head without ``combine_outputs`` (not an :class:`ATMHead`),
      several decode heads (a cascade) and an image size below 1.
    * ``dynamic`` with a backbone of :data:`STATIC_ONLY_BACKBONES` (Swin,
      BEiT, MAE), and for BEiT and MAE any size but their ``img_size``.

    Raises:
        ValueError: Naming the setting and what to do.
    """
    if min(shape) < 1:
        raise ValueError(f'the example image size must be positive, got '
                         f'{tuple(shape)}')
    test_cfg = getattr(segmentor, 'test_cfg', None) or {}
    mode = test_cfg.get('mode', 'whole')
    if mode != 'whole':
        window = ''
        if mode == 'slide':
            window = (f" (crop {tuple(test_cfg.get('crop_size', ()))}, "
                      f"stride {tuple(test_cfg.get('stride', ()))})")
        raise ValueError(
            f"the config predicts with model.test_cfg.mode='{mode}'"
            f'{window}, and the exported graph computes whole-image '
            'inference (one forward at the input size), so it would not '
            'give what mim test and inference_model give. To export the '
            'whole-image inference of this model anyway, pass '
            "--cfg-options model.test_cfg.mode=whole (export_onnx: set "
            "model.test_cfg['mode'] = 'whole'); to reproduce sliding "
            'windows, run the graph on the crops and merge them as '
            "mmseg's EncoderDecoder.slide_inference does")
    backbone = getattr(segmentor, 'backbone', None)
    kinds = [cls.__name__ for cls in type(backbone).__mro__]
    kind = next((k for k in kinds if k in STATIC_ONLY_BACKBONES), None)
    if kind is not None:
        _, native = _patch(segmentor)
        if dynamic:
            raise ValueError(
                f'--dynamic is refused for a {type(backbone).__name__} '
                f'backbone: {STATIC_ONLY_BACKBONES[kind]}. Export one size '
                'per file (without --dynamic, --shape H W)')
        if kind != 'SwinTransformer' and native and tuple(shape) != native:
            raise ValueError(
                f'{type(backbone).__name__} runs at its img_size {native} '
                f'only ({STATIC_ONLY_BACKBONES[kind]}); got --shape '
                f'{tuple(shape)}')
    head = getattr(segmentor, 'decode_head', None)
    if not hasattr(head, 'combine_outputs'):
        raise ValueError(
            'the exporter takes a segmentor with one ATMHead as its '
            f'decode_head, got {type(head).__name__}: the graph ends with '
            "ATMHead's combination of class and mask logits")


def export_onnx(segmentor: nn.Module,
                path: str,
                shape: Size,
                dynamic: bool = False,
                opset: int = 17,
                output: str = 'scores',
                order: Optional[str] = None,
                exporter: str = 'auto') -> SegmentorForExport:
    """Write ``segmentor``'s inference to an ONNX file.

    Args:
        segmentor (nn.Module): An mmseg ``EncoderDecoder`` with an ATMHead,
            on CPU. It is put in eval mode.
        path (str): Output ``.onnx`` file.
        shape (tuple[int, int]): Image size (H, W) of the example input.
        dynamic (bool): Batch, height and width are dynamic axes; every
            size gives what PyTorch gives (sizes off the patch grid are
            padded in the graph as the patch embedding pads them). The graph
            is traced at :func:`trace_shape`. Default: False (the graph
            takes one (1, 3, H, W) batch).
        opset (int): ONNX opset. Default: 17.
        output (str): ``'scores'`` (B, K, H, W) float or ``'labels'``
            (B, H, W) int64. Default: 'scores'.
        order (str, optional): ``'faithful'`` or ``'fast'``; see
            :func:`combine`. Default: the head's own (``fast_inference``),
            what its ``predict`` computes.
        exporter (str): ``'torchscript'``, ``'dynamo'`` (torch.export; the
            example batch is then 2, as torch.export specialises a size 1)
            or ``'auto'`` (:func:`choose_exporter`). Default: 'auto'.

    Returns:
        SegmentorForExport: The module that was exported.
    """
    shape = (int(shape[0]), int(shape[1]))
    check_exportable(segmentor, shape, dynamic)
    exporter = choose_exporter(segmentor, dynamic, exporter)
    wrapper = SegmentorForExport(segmentor, output, order).eval()
    size = trace_shape(segmentor, shape) if dynamic else shape
    if exporter == 'dynamo':
        _export_dynamo(wrapper, path, size, dynamic, opset)
        if dynamic:
            check_dynamic_inputs(path, exporter)
        return wrapper
    example = torch.randn(1, 3, *size)
    dims = {0: 'batch', 2: 'height', 3: 'width'}
    out_dims = dims if output == 'scores' else {
        0: 'batch',
        1: 'height',
        2: 'width'
    }
    with torch.no_grad(), no_mha_fastpath(), warnings.catch_warnings():
        # the tracer warns at every Python-side shape test; the checks at
        # two sizes (check_onnx) are what tell whether the graph generalises
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.onnx.export(
            wrapper, (example, ),
            path,
            dynamo=False,
            opset_version=opset,
            input_names=['inputs'],
            output_names=[output],
            dynamic_axes={
                'inputs': dims,
                output: out_dims
            } if dynamic else None)
    if dynamic:
        check_dynamic_inputs(path, exporter)
    return wrapper


def check_dynamic_inputs(path: str, exporter: str) -> None:
    """Refuse a graph asked for dynamic sizes whose input the exporter fixed
    anyway (torch.export specialises a dimension that the model's Python code
    compares with a constant): such a graph accepts only the traced size, and
    every other would fail inside onnxruntime.

    Args:
        path (str): The exported ``.onnx`` file (its ``inputs``).
        exporter (str): The exporter's name, for the message.

    Raises:
        ValueError: If the batch, height or width of ``inputs`` is a fixed
            number in the graph.
    """
    import onnx
    graph = onnx.load(path, load_external_data=False).graph
    (inputs, ) = [i for i in graph.input if i.name == 'inputs']
    dims = inputs.type.tensor_type.shape.dim
    fixed = {
        name: dims[axis].dim_value
        for axis, name in ((0, 'batch'), (2, 'height'), (3, 'width'))
        if dims[axis].HasField('dim_value')
    }
    if fixed:
        raise ValueError(
            f'the {exporter} exporter fixed the input size of a --dynamic '
            f'export ({fixed}): this model cannot be exported with dynamic '
            'sizes; export it without --dynamic at the size you need '
            '(--shape H W) and resize or pad the images to it '
            '(mmseg_segvit.deploy.prepare_inputs), or try another '
            '--exporter')


def _export_dynamo(wrapper: SegmentorForExport, path: str, size: Size,
                   dynamic: bool, opset: int) -> None:
    """:func:`export_onnx` with ``torch.onnx.export(..., dynamo=True)``."""
    patch, _ = _patch(wrapper.segmentor)
    example = torch.randn(2 if dynamic else 1, 3, *size)
    shapes = None
    if dynamic:  # any size: the graph pads to the patch grid
        dim = torch.export.Dim
        shapes = {
            'inputs': {
                0: dim('batch', min=1, max=1024),
                2: dim('height', min=1, max=1024 * patch),
                3: dim('width', min=1, max=1024 * patch)
            }
        }
    with torch.no_grad(), no_mha_fastpath(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(
            wrapper, (example, ),
            path,
            dynamo=True,
            opset_version=max(opset, 18),
            input_names=['inputs'],
            output_names=[wrapper.output],
            dynamic_shapes=shapes,
            external_data=False,
            verbose=False)


class OnnxCheck(NamedTuple):
    """onnxruntime against PyTorch on one random batch.

    ``max_abs_diff`` is over the scores (None for a ``labels`` export);
    ``agreement`` is the share of pixels with the same arg-max label.
    """
    shape: Tuple[int, int, int]
    max_abs_diff: Optional[float]
    agreement: float

    def passed(self, atol: float = 1e-3, min_agreement: float = 0.999) -> bool:
        return (self.max_abs_diff is None or self.max_abs_diff <= atol) \
            and self.agreement >= min_agreement


def check_onnx(path: str,
               wrapper: SegmentorForExport,
               shapes: Sequence[Tuple[int, int, int]],
               seed: int = 0) -> List[OnnxCheck]:
    """Run ``path`` with onnxruntime (CPU) and compare it with ``wrapper``.

    Args:
        path (str): The exported file.
        wrapper (SegmentorForExport): The PyTorch module it came from.
        shapes (Sequence[tuple]): (B, H, W) sizes, one random batch each.
        seed (int): Of the random batches. Default: 0.

    Returns:
        list[OnnxCheck]: One per size.
    """
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    generator = torch.Generator().manual_seed(seed)
    results = []
    for b, h, w in shapes:
        inputs = torch.randn(b, 3, h, w, generator=generator)
        with torch.no_grad():
            ref = wrapper(inputs)
        out = torch.from_numpy(session.run(None, {name: inputs.numpy()})[0])
        if tuple(out.shape) != tuple(ref.shape):
            raise RuntimeError(
                f'{path}: onnxruntime gives shape {tuple(out.shape)} for a '
                f'{b}x3x{h}x{w} input, PyTorch {tuple(ref.shape)}')
        if wrapper.output == 'scores':
            diff = (out - ref).abs().max().item()
            agree = (out.argmax(1) == ref.argmax(1)).float().mean().item()
        else:
            diff, agree = None, (out == ref).float().mean().item()
        results.append(OnnxCheck((b, h, w), diff, agree))
    return results
