"""--amp auto|on|off: bfloat16 autocast where the hardware multiplies bfloat16 natively, float32 elsewhere.

The hardware queries are replaced by fakes, so every branch runs on any machine.
"""
import json

import pytest
import torch

from nnbasics import train
from nnbasics.train import app, precision

CPU = torch.device("cpu")


@pytest.mark.parametrize("features,expected", [(("avx512_bf16",), True), (("amx",), True),
                                               (("avx512_bf16", "amx"), True), ((), False)])
def test_auto_on_the_cpu_follows_its_bfloat16_instructions(monkeypatch, features, expected):
    monkeypatch.setattr(precision, "cpu_bf16_features", lambda: features)
    amp, why = precision.choose("auto", CPU, "float32")
    assert amp is expected
    assert why.startswith("--amp auto: ")
    assert ("no native bfloat16" in why) is (not expected)
    for name in features:
        assert name in why


@pytest.mark.parametrize("capability,expected", [((7, 5), False), ((8, 0), True), ((9, 0), True)])
def test_auto_on_cuda_follows_the_compute_capability(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    amp, why = precision.choose("auto", torch.device("cuda"), "float32")
    assert amp is expected and f"{capability[0]}.{capability[1]}" in why


def test_on_and_off_are_what_they_say_and_float64_turns_auto_off(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_features", lambda: ("amx",))
    assert precision.choose("off", CPU, "float32") == (False, "--amp off")
    assert precision.choose("on", CPU, "float32") == (True, "--amp on")
    assert precision.choose("auto", CPU, "float64")[0] is False
    monkeypatch.setattr(precision, "cpu_bf16_features", lambda: ())
    assert precision.choose("on", CPU, "float32")[0] is True  # the user's word wins


def test_amp_flag_values():
    assert train.parse_args([]).amp == "auto"
    assert train.parse_args(["--amp"]).amp == "on"  # the switch of earlier versions still works
    assert train.parse_args(["--amp", "off"]).amp == "off"
    assert train.Config(amp=True).amp == "on" and train.Config(amp=False).amp == "off"  # old checkpoints


def test_amp_on_with_float64_is_refused(capsys):
    with pytest.raises(SystemExit):
        train.main(["--amp", "on", "--dtype", "float64", "--quiet"])
    assert "--amp on with --dtype float64" in capsys.readouterr().err


@pytest.mark.parametrize("features", [("avx512_bf16",), ()])
def test_the_choice_is_announced_and_recorded(tmp_path, monkeypatch, capsys, features, mnist):
    monkeypatch.setattr(precision, "cpu_bf16_features", lambda: features)
    seen = []
    real_step = train.train_step

    def step(*args, amp=False, **kwargs):
        seen.append(amp)
        return real_step(*args, amp=amp, **kwargs)

    monkeypatch.setattr(app, "train_step", step)
    out = tmp_path / "run"
    train.run(train.Config(hidden=[16], epochs=1, batch_size=64, limit_train=256, device="cpu", out=str(out)),
              data=mnist)
    native = bool(features)
    assert set(seen) == {native}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["precision"] == ("bfloat16 autocast" if native else "float32")
    assert summary["config"]["amp"] == "auto" and summary["precision_reason"].startswith("--amp auto")
    start = capsys.readouterr().err.splitlines()[0]
    assert ("bfloat16 autocast" in start) is native and "--amp auto" in start, start
