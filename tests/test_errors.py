"""Failures on the command line: user errors (exit 2), internal errors (exit 1, "please report"),
the user's own code failing (exit 1); one line each, the traceback only with --debug / RELU_SURGERY_DEBUG."""

from __future__ import annotations

import pytest

import relu_surgery.surgery.pipeline as pipeline
from relu_surgery.cli import main
from relu_surgery.errors import InternalError

ARGS = ["erase", "cifar_resnet20", "--no-check"]
INTERNAL = "internal error in relu_surgery (please report): the plan names node 'x', which the graph does not have\n"


class Broken:
    """A user's model builder that fails in its own code."""

    def __init__(self):
        raise RuntimeError("broken by design\nsecond line")


@pytest.fixture
def internal_failure(monkeypatch):
    def fail(gm, actions):
        raise InternalError("the plan names node 'x', which the graph does not have")

    monkeypatch.setattr(pipeline, "execute", fail)
    monkeypatch.delenv("RELU_SURGERY_DEBUG", raising=False)


def test_internal_error_is_one_line_exit_1(internal_failure, capsys):
    assert main(ARGS) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", INTERNAL)


def test_debug_flag_adds_the_traceback(internal_failure, capsys):
    assert main(["--debug", *ARGS]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):\n") and err.endswith(INTERNAL)
    assert "relu_surgery.errors.InternalError: the plan names node 'x'" in err


def test_debug_environment_variable_adds_the_traceback(internal_failure, capsys, monkeypatch):
    monkeypatch.setenv("RELU_SURGERY_DEBUG", "1")
    assert main(ARGS) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):\n") and err.endswith(INTERNAL)


def test_user_errors_stay_one_line_exit_2(capsys, monkeypatch):
    monkeypatch.delenv("RELU_SURGERY_DEBUG", raising=False)
    assert main(["--debug", "erase", "cifar_resnet20", "--location", "sideways"]) == 2
    assert capsys.readouterr().err == "error: location must be last, first, all or a site number, got 'sideways'\n"


def test_the_users_own_code_failing_is_one_line_exit_1(capsys, monkeypatch):
    monkeypatch.delenv("RELU_SURGERY_DEBUG", raising=False)
    assert main(["erase", "tests.test_errors:Broken"]) == 1
    assert capsys.readouterr().err == ("error: RuntimeError: broken by design "
                                       "(run with --debug or RELU_SURGERY_DEBUG=1 for the traceback)\n")
    assert main(["--debug", "erase", "tests.test_errors:Broken"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last):" in err and err.endswith("error: RuntimeError: broken by design\n")
