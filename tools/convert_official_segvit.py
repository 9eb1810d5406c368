"""Convert a released SegViT checkpoint: see
:mod:`mmseg_segvit.tools.convert_official_segvit`."""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmseg_segvit.tools.convert_official_segvit import main

if __name__ == '__main__':
    main()
