"""A run's record on disk (nnbasics.train.runs, nnbasics.train.checkpoint): the files, the checkpoint
and what --resume may change.

Whole runs that write these files are tested in test_train.py; here, the pieces on their own.
"""
import sys

import pytest
import torch

from nnbasics.cli import ConfigError
from nnbasics.train import Config, runs
from nnbasics.train import checkpoint as ckpt


def test_without_matplotlib_no_curves_and_no_crash(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    assert runs.plot_curves([{"epoch": 1, "train_loss": 1, "val_loss": 1, "train_acc": 0.5, "val_acc": 0.5}],
                            tmp_path / "curves.png") is False
    assert not (tmp_path / "curves.png").exists()


def test_resume_config_takes_the_saved_values_and_refuses_changes(tmp_path):
    saved = Config(hidden=[32], lr=0.05, out=str(tmp_path / "old"), quiet=False)
    checkpoint = {"config": vars(saved)}
    resumed = ckpt.resume_config(Config(resume=str(tmp_path / "run"), quiet=True), checkpoint)
    assert resumed.hidden == [32] and resumed.lr == 0.05  # flags left at their defaults take the saved values
    assert resumed.out == resumed.resume == str(tmp_path / "run") and resumed.quiet  # RESUME_MAY_CHANGE
    with pytest.raises(ConfigError, match="--hidden 64"):
        ckpt.resume_config(Config(resume="x", hidden=[64]), checkpoint)


def test_missing_or_broken_checkpoint_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint.pt there"):
        ckpt.load_checkpoint(tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read"):
        ckpt.load_checkpoint(tmp_path)


def test_early_stopping_bookkeeping():
    model = torch.nn.Linear(2, 1)
    progress = ckpt.Progress()
    stops = []
    for epoch, loss in enumerate([1.0, 0.5, 0.6, 0.7], start=1):
        progress.epoch = epoch
        stops.append(progress.update_best(model, loss, patience=2))
    assert stops == [False, False, False, True]
    assert progress.best_epoch == 2 and progress.best_val_loss == 0.5
    assert progress.best_weights.keys() == model.state_dict().keys()
