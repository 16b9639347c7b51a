"""python -m fcn_deploy.cli.analysis: the Table 1 row of a model, and a wrong name as one error line."""
from fcn_deploy.cli.analysis import main


def test_row_of_fcn_alexnet(capsys):
    assert main(["fcn_alexnet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| arch | parameters | trainable |")
    # 56,954,261 trainable (the paper's 57M), receptive field 355, stride 32 (README, Models).
    assert lines[2] == "| fcn_alexnet | 58,704,590 | 56,954,261 | 8 | 21.4 | 355 | 32 |"


def test_unknown_model_is_one_error_line(capsys):
    assert main(["fcn_nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model 'fcn_nope'; valid names: ") and "Traceback" not in err
