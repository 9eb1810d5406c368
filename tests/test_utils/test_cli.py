"""Command-line helpers: quiet_output hides library output, not failures."""
import logging
import warnings

import pytest
from mmengine.logging import MMLogger, print_log

from mmseg_segvit.utils.cli import quiet_output


def test_quiet_output_hides_logs_prints_and_warnings(capsys):
    logger = MMLogger.get_current_instance()
    level = logger.level
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        with quiet_output():
            print('library print')
            print_log('library log', logger='current', level=logging.INFO)
            warnings.warn('library warning')
        print('result line')
    out, err = capsys.readouterr()
    assert out == 'result line\n' and err == ''
    assert not caught
    assert logger.level == level
    print_log('after', logger='current', level=logging.WARNING)
    logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == ['after']


def test_quiet_output_prints_what_it_kept_when_the_block_fails(capsys):
    with pytest.raises(RuntimeError, match='boom'):
        with quiet_output():
            print('what led to it')
            raise RuntimeError('boom')
    out, err = capsys.readouterr()
    assert out == '' and 'what led to it' in err


def test_verbose_hides_nothing(capsys):
    with quiet_output(verbose=True):
        print('library print')
    assert capsys.readouterr().out == 'library print\n'
