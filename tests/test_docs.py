"""The README stays a short guide and every page it leads to exists."""
import glob
import os.path as osp
import re

import pytest
from fixtures import REPO

PAGES = ['README.md', 'configs/segvit/README.md'] + sorted(
    osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, 'docs', '*.md')))


def _anchors(path):
    """GitHub's anchors of a Markdown file's headings."""
    found = set()
    with open(path) as f:
        for line in f:
            match = re.match(r'^#+\s+(.*)', line)
            if match:
                title = re.sub(r'[^\w\- ]', '', match.group(1).strip().lower())
                found.add(title.replace(' ', '-'))
    return found


def test_readme_is_short():
    with open(osp.join(REPO, 'README.md')) as f:
        assert len(f.read().splitlines()) < 250


@pytest.mark.parametrize('page', PAGES)
def test_local_links_and_anchors_resolve(page):
    path = osp.join(REPO, page)
    with open(path) as f:
        text = f.read()
    for link in re.findall(r'\]\(([^)\s]+)\)', text):
        if re.match(r'[a-z]+://', link):
            continue
        target, _, anchor = link.partition('#')
        target = (
            osp.normpath(osp.join(osp.dirname(path), target))
            if target else path)
        assert osp.exists(target), f'{page}: {link} does not exist'
        if anchor and target.endswith('.md'):
            assert anchor in _anchors(target), f'{page}: no #{anchor}'


def test_readme_leads_to_every_docs_page():
    """Every page under docs/ is linked from the README or docs/README.md,
    which the README links."""
    with open(osp.join(REPO, 'README.md')) as f:
        readme = f.read()
    with open(osp.join(REPO, 'docs', 'README.md')) as f:
        index = f.read()
    assert 'docs/README.md' in readme
    for page in glob.glob(osp.join(REPO, 'docs', '*.md')):
        name = osp.basename(page)
        if name != 'README.md':
            assert f'({name})' in index, f'docs/README.md misses {name}'
