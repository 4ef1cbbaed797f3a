"""checkpoint: the per-epoch checkpoint keeps what a resumed fit needs (optimizer state, the
callbacks' counters) and restores it."""

import numpy as np
from helpers.models import tiny_model_and_data

from alexnet_exp import checkpoint, resume, training
from alexnet_exp.config import TrainerConfig


def test_checkpoint_holds_optimizer_state_and_callback_counters(tmp_path):
    trainer = TrainerConfig(epochs=2, batch_size=4, verbose=0, tensorboard=False,
                            reduce_lr_patience=1, early_stopping_patience=5)
    model, ds = tiny_model_and_data(trainer)
    point = resume.ResumePoint(None, tmp_path / "ckpt")
    result = training.fit(model, ds, ds, 8, trainer, tmp_path, point=point)
    saved = resume.read_point(tmp_path / "ckpt", "run")
    assert saved.epoch == 2 and len(saved.history) == 2 == len(result.history)
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("epoch-*")) == ["epoch-0002.keras"]
    assert set(saved.counters) == {"ReduceLROnPlateau", "EarlyStopping", "BestWeights"}
    restored = checkpoint.restore_model(saved)
    assert int(restored.optimizer.iterations) == 4  # 2 epochs x 2 steps: momentum survives
    momentum = [v for v in restored.optimizer.variables if "momentum" in v.path]
    assert momentum and any(np.abs(np.asarray(v)).sum() > 0 for v in momentum)
    # A second fit from the point continues the epoch count and the history.
    more = training.fit(restored, ds, ds, 8, TrainerConfig(**{**trainer.__dict__, "epochs": 3}),
                     tmp_path, point=saved)
    assert len(more.history) == 3 and resume.read_point(tmp_path / "ckpt", "run").epoch == 3
