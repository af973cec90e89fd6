"""Bad input gives one clear line of error and leaves no output behind."""

import pytest

from selfexplain.cli import build_parser, main


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("target=/no/such/model", "/no/such/model"),
        ("train.explainer=/no/such/explainer.gguf", "/no/such/explainer.gguf"),
        ("train.lrr=1", "unknown config key 'train.lrr'"),
        ("generate.prompts=EMPTY", "holds no prompts"),
        ("generate.prompts=/no/such/prompts.txt", "not found"),
    ],
)
def test_bad_input_fails_cleanly(tmp_path, capsys, override, expected):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    runs = tmp_path / "runs"
    override = override.replace("EMPTY", str(empty))
    commands = [["run", "tiny"]] + ([] if "explainer" in override else [["generate", "ablation", "tiny"]])
    for command in commands:
        assert main([*command, f"output_dir={runs}", override]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("selfexplain: error:") and expected in err
        assert not runs.exists()


def test_every_option_is_explained(capsys):
    parser = build_parser()
    for command in ("generate", "train", "evaluate", "run"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        text = capsys.readouterr().out
        assert "key=value" in text and "train.zero_stage" in text and "DeepSpeed ZeRO stage" in text
