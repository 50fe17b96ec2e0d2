"""The numeric flags of every entry point: their domains (data.flags), the audit's cases, and a
fuzz of random argument vectors built from each parser's real flags. Parsing plus the
configuration checks must end in argparse's exit 2 or one of the project's one-line errors,
never anything else; nothing is trained and no data is read."""
import argparse
import contextlib
import io
import itertools
import re
import warnings

import pytest
from hypothesis import given, settings, strategies as st

import run_eval
import run_train
from data import baselines, flags, prepare_h36m, skeleton_check, vp3d
from data.dataset import DatasetError
from data.synth import __main__ as synth_cli
from structlearn.checkpoint import CheckpointError
from structlearn.train import TrainingError, validate_config
from structlearn.trained_run import EvalError

ONE_LINE_ERRORS = (TrainingError, DatasetError, CheckpointError, EvalError)


# ---------------------------------------------------------------- the domains
@pytest.mark.parametrize("domain, good, bad", [
    (flags.positive_int, ["1", " 7 ", "10000000000000000000000"], ["0", "-1", "1.5", "nan", "inf", "1e3", "", "x"]),
    (flags.non_negative_int, ["0", "3"], ["-1", "nan", "-0.5"]),
    (flags.int_at_least(2), ["2"], ["1"]),
    (flags.positive_float, ["1e-300", "2.5", "7"], ["0", "-1", "nan", "-nan", "inf", "-inf", "1e400", "abc"]),
    (flags.non_negative_float, ["0", "-0.0", "1e300"], ["-1e-9", "nan", "inf"]),
    (flags.fraction, ["0", "0.999"], ["1", "-0.1", "nan"]),
    (flags.finite_float, ["-5", "0"], ["nan", "inf", "-1e400"]),
])
def test_domains(domain, good, bad):
    for text in good:
        assert domain.problem(domain(text)) is None, text
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(f"expected {domain.words}, got ")):
            domain(text)


def test_problem_of_parsed_values():
    assert flags.positive_int.problem(0) == "must be >= 1, got 0"
    assert flags.non_negative_float.problem(float("nan")) == "must be finite, got nan"
    assert flags.positive_int.problem(True) == "must be a positive integer, got True"
    assert flags.fraction.problem(1.5) == "must be in [0, 1), got 1.5"
    import numpy as np
    assert flags.positive_int.problem(np.int64(0)) == "must be >= 1, got 0"    # not np.int64(0)


def test_every_numeric_training_field_has_a_domain():
    from dataclasses import fields
    from structlearn.config import DOMAINS, TrainConfig
    assert {f.name for f in fields(TrainConfig) if f.type in (int, float)} == set(DOMAINS)


# ---------------------------------------------------------------- the audit's cases
@pytest.mark.parametrize("argv, flag", [
    (["--seed", "-1"], "--seed"), (["--noise-std", "-1"], "--noise-std"), (["--stop-after", "-1"], "--stop-after"),
    (["--synth-scale", "0"], "--synth-scale"), (["--synth-scale", "-2"], "--synth-scale"),
    (["--synth-scale", "nan"], "--synth-scale"), (["--synth-scale", "inf"], "--synth-scale"),
    (["--lam", "nan"], "--lam"), (["--pretrain-lr=-inf"], "--pretrain-lr"), (["--epochs", "-3"], "--epochs"),
    (["--ls-points", "1"], "--ls-points"), (["--pretrain-momentum", "1"], "--pretrain-momentum"),
])
def test_run_train_rejects_values_outside_the_domain(argv, flag, tmp_path, capsys):
    # run_train checks its values in the configuration (also for callers of structlearn.train), so a
    # number outside its domain is a one-line error (exit 1), as --candidates 0 always was
    code = run_train.main(argv + ["--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith(f"run_train.py: error: {flag} must be"), err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("main, argv, flag", [
    (synth_cli.main, ["--scale", "0"], "--scale"), (synth_cli.main, ["--scale", "-1"], "--scale"),
    (synth_cli.main, ["--scale", "nan"], "--scale"), (synth_cli.main, ["--scale", "inf"], "--scale"),
    (synth_cli.main, ["--seed", "-1"], "--seed"), (synth_cli.main, ["--workers", "0"], "--workers"),
    (synth_cli.main, ["--bank-rate", "nan"], "--bank-rate"),
    (run_eval.main, ["--apf-seed", "-1"], "--apf-seed"), (run_eval.main, ["--batch-size", "nan"], "--batch-size"),
    (prepare_h36m.main, ["--root", ".", "--out", "x.h5", "--frame-step", "0"], "--frame-step"),
    (prepare_h36m.main, ["--root", ".", "--out", "x.h5", "--bank-rate", "-10"], "--bank-rate"),
    (baselines.main, ["--data", "x.h5", "--size", "-16"], "--size"),
    (vp3d.main, ["--bank", "x.npz", "--into", "x.h5", "--rate", "nan"], "--rate"),
    (vp3d.main, ["--bank", "x.npz", "--into", "x.h5", "--tolerance-mm", "-1"], "--tolerance-mm"),
])
def test_other_entry_points_reject_values_at_parse_time(main, argv, flag, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"argument {flag}: expected " in err and "Traceback" not in err


# ---------------------------------------------------------------- the fuzz
def _train(argv):
    parser = run_train.build_parser()
    validate_config(run_train.config_from_args(parser.parse_args(argv), parser))


ENTRY_POINTS = {   # name: (parser, the in-process checks of a command line, flags it always gets)
    "run_train": (run_train.build_parser(), _train, []),
    "run_eval": (run_eval.build_parser(), run_eval.parse_config, []),
    "data.synth": (synth_cli.build_parser(), synth_cli.parse_args, []),
    "data.prepare_h36m": (prepare_h36m.build_parser(), prepare_h36m.parse_args, ["--root", ".", "--out", "x.h5"]),
    "data.baselines": (baselines.build_parser(), baselines.parse_args, ["--data", "x.h5"]),
    "data.skeleton": (skeleton_check.build_parser(), skeleton_check.parse_args, ["--check", "x.h5"]),
    "data.vp3d": (vp3d.build_parser(), vp3d.parse_args, ["--bank", "x.npz", "--into", "x.h5"]),
}
SPECIAL = ["0", "-1", "1", "2", "-0", "0.5", "1.5", "nan", "-nan", "inf", "-inf", "1e400", "-1e400", "1e-400",
           "9" * 40, "0x10", "1_0", "", " ", "x", "3abc", "auto", "all", "S1", "S3", "Walking,Dancing", "1,-2",
           "max,fancy"]
VALUES = st.one_of(
    st.sampled_from(SPECIAL),
    st.integers(-10 ** 12, 10 ** 12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=6).filter(lambda t: not t.startswith("-")))   # a leading dash may abbreviate --help


def _flags(parser):
    return [a for a in parser._actions if a.option_strings and a.dest != "help"]


def _clean(check, argv):
    """check(argv) ends normally, in argparse's exit 2 or in a one-line error; no warning."""
    with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("error")      # a warning would be printed before the error
        try:
            check(argv)
        except SystemExit as exc:
            assert exc.code == 2, (argv, exc.code)
        except ONE_LINE_ERRORS as err:
            assert "\n" not in str(err), (argv, err)


def _command_lines(name):
    parser, _, fixed = ENTRY_POINTS[name]

    def argv(choices):
        out = list(fixed)
        for action, values in choices:
            out += [action.option_strings[-1]] + values[:{None: 1, 0: 0}.get(action.nargs, action.nargs)]
        return out
    return st.lists(st.tuples(st.sampled_from(_flags(parser)), st.lists(VALUES, min_size=2, max_size=2)),
                    max_size=5).map(argv)


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_fuzzed_command_lines_fail_only_cleanly(name):
    check = ENTRY_POINTS[name][1]

    @settings(max_examples=300)
    @given(_command_lines(name))
    def fuzz(argv):
        _clean(check, argv)
    fuzz()


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_every_flag_with_every_special_value(name):
    # the fuzz's combinations, completed by each flag alone with each special value (and pair)
    parser, check, fixed = ENTRY_POINTS[name]
    for action in _flags(parser):
        flag = action.option_strings[-1]
        if action.nargs == 0:
            _clean(check, fixed + [flag])
        elif action.nargs == 2:
            for v, w in itertools.product(SPECIAL, SPECIAL):
                _clean(check, fixed + [flag, v, w])
        else:
            for v in SPECIAL:
                _clean(check, fixed + [flag, v])
