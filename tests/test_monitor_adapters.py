"""The monitor inside Lightning and the Hugging Face Trainer (real packages, tiny models built
from code or configs, nothing downloaded): the same tags as a plain loop, and the Trainer's own
pre-clip gradient norm equals the monitor's."""

from __future__ import annotations

import os

import pytest
import torch

from descend import optim, train
from descend.monitor import Monitor

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


STEPS, EVERY = 30, 10


def _digits_data():
    ds = train.load("digits")
    return ds.x_train[: 32 * STEPS], ds.y_train[: 32 * STEPS], ds


def _tags(mon: Monitor) -> set[str]:
    return set(mon.frame().columns) - {"step"}


def _plain_loop_tags() -> set[str]:
    x, y, ds = _digits_data()
    train.seed_everything(0)
    net = train.build("mlp", ds)
    opt = optim.Adam(net.parameters(), lr=1e-3)
    mon = Monitor(opt, net, every=EVERY)
    for i in range(STEPS):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            net(x[i * 32 : (i + 1) * 32]), y[i * 32 : (i + 1) * 32]
        )
        loss.backward()
        opt.step()
        mon.log_loss(loss)
    mon.close()
    return _tags(mon)


def test_lightning_callback_logs_the_same_names(tmp_path):
    import lightning.pytorch as pl

    from descend.monitor.lightning import MonitorCallback

    x, y, ds = _digits_data()
    train.seed_everything(0)
    net = train.build("mlp", ds)

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = net

        def training_step(self, batch, _):
            xb, yb = batch
            return torch.nn.functional.cross_entropy(self.net(xb), yb)

        def configure_optimizers(self):
            return optim.Adam(self.net.parameters(), lr=1e-3)

    callback = MonitorCallback(every=EVERY, log=str(tmp_path / "pl.jsonl"))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    trainer = pl.Trainer(
        max_steps=STEPS,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=str(tmp_path),
    )
    trainer.fit(Module(), loader)
    mon = callback.monitor
    assert mon.steps == STEPS and [r["step"] for r in mon.rows if "opt/update_ratio" in r] == [
        1,
        11,
        21,
    ]
    # the LightningModule names its layers net.*; strip that prefix, the rest is identical
    tags = {t.replace("layer/net.", "layer/") for t in _tags(mon)}
    assert tags == _plain_loop_tags()
    assert (tmp_path / "pl.jsonl").read_text().count("\n") == len(mon.rows)


class _DigitsForTrainer(torch.nn.Module):
    """The digits MLP with the Trainer's calling convention (keyword inputs, loss returned)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, labels=None):
        logits = self.net(x)
        return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}


class _Rows(torch.utils.data.Dataset):
    def __init__(self, **columns):
        self.columns = columns

    def __len__(self):
        return len(next(iter(self.columns.values())))

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.columns.items()}


def _hf_args(tmp_path, **kw):
    from transformers import TrainingArguments

    base = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=32,
        max_steps=STEPS,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        lr_scheduler_type="constant",
    )
    base.update(kw)
    return TrainingArguments(**base)


def test_hf_trainer_callback_logs_the_same_names(tmp_path):
    from transformers import Trainer

    from descend.monitor.hf import MonitorCallback

    x, y, ds = _digits_data()
    train.seed_everything(0)
    net = train.build("mlp", ds)
    model = _DigitsForTrainer(net)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    callback = MonitorCallback(every=EVERY, log=str(tmp_path / "hf.jsonl"))
    trainer = Trainer(
        model=model,
        args=_hf_args(tmp_path, max_grad_norm=0.0),
        train_dataset=_Rows(x=x, labels=y),
        optimizers=(opt, None),
        callbacks=[callback],
    )
    trainer.train()
    mon = callback.monitor
    assert mon.steps == STEPS
    tags = {t.replace("layer/net.", "layer/") for t in _tags(mon)}
    assert tags == _plain_loop_tags()


def test_hf_tiny_gpt2_with_accumulation_and_clipping(tmp_path):
    """A GPT-2 built from a config (2 layers, width 32): the Trainer clips at 0.5 and
    accumulates 2 micro-batches; its logged grad_norm (before clipping) equals the monitor's
    grad_norm_preclip, the gradient used has norm ≤ 0.5, and the noise scale is estimated."""
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer

    from descend.monitor.hf import MonitorCallback

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2)
    model = GPT2LMHeadModel(config)
    ids = torch.randint(0, 64, (32 * 2 * 12, 16), generator=torch.Generator().manual_seed(0))
    logged: dict[int, float] = {}

    class Grab(MonitorCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "grad_norm" in logs:
                logged[state.global_step] = float(logs["grad_norm"])
            return super().on_log(args, state, control, logs=logs, **kw)

    callback = Grab(every=5)
    trainer = Trainer(
        model=model,
        args=_hf_args(
            tmp_path,
            max_steps=12,
            per_device_train_batch_size=8,
            gradient_accumulation_steps=2,
            max_grad_norm=0.5,
            learning_rate=1e-3,
        ),
        train_dataset=_Rows(input_ids=ids, labels=ids),
        callbacks=[callback],
    )
    trainer.train()
    mon = callback.monitor
    rows = [r for r in mon.rows if "opt/update_ratio" in r]
    assert [r["step"] for r in rows] == [1, 6, 11]
    for r in rows:
        assert r["opt/micro_batches"] == 2
        assert r["opt/grad_norm_preclip"] == pytest.approx(logged[r["step"]], rel=1e-4)
        assert r["opt/grad_norm"] <= 0.5 * (1 + 1e-4)
        assert r["opt/clipped"] == float(r["opt/grad_norm_preclip"] > 0.5)
        assert "opt/gns_g2" in r and "opt/eff_lr_p50" in r
    assert any(k.startswith("layer/transformer.h.1.") for k in rows[0])
    assert "opt/noise_scale" in rows[-1] or rows[-1]["opt/gns_g2"] <= 0
