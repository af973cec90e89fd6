"""The command line explains itself (bad inputs: see test_bad_input.py)."""

import pytest

from selfexplain.cli import build_parser


def test_every_option_is_explained(capsys):
    parser = build_parser()
    for command in ("generate", "train", "evaluate", "run"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        text = capsys.readouterr().out
        assert "key=value" in text and "train.zero_stage" in text and "DeepSpeed ZeRO stage" in text
