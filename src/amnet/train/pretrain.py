"""Attribute-CNN pretraining (§3.4 Memory Initialization, §4): backbone + M softmax branches.

The network learns to classify every attribute of the ``attr_train`` images; its representation
initialises AMNet's representation learner and, averaged per attribute value, its memory.
Missing labels (-1) are ignored by the loss. A held-out part reports per-attribute accuracy.

Under torchrun (``WORLD_SIZE`` > 1) every rank walks the same (seed, epoch) permutation and trains on
its own contiguous part of each batch inside DistributedDataParallel; rank 0 alone measures the held-out
accuracy and writes checkpoints, the model and the log.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from tqdm import tqdm

from amnet import config as cfgmod
from amnet import storage
from amnet.config import PretrainConfig
from amnet.data import shards
from amnet.data.split import dataset_digest, label_matrix, load_split_vocab
from amnet.data.tensors import decode_batch, to_input
from amnet.model_store import save_model
from amnet.models.attribute_cnn import AttributeCNN, attribute_loss
from amnet.models.backbones import build_backbone
from amnet.names import TAG_DATASET_DIGEST
from amnet.runtime import LogFn, pick_device, seed_everything
from amnet.train import checkpoint, distributed
from amnet.train.loop_utils import Throughput, sgd, split_decay
from amnet.train.weights import load_backbone_weights

logger = logging.getLogger(__name__)  # `log` is the metrics callback here


def build_attribute_cnn(model_cfg, sizes: list[int]) -> AttributeCNN:
    return AttributeCNN(build_backbone(model_cfg), model_cfg.feature_dim, sizes)


@torch.no_grad()
def per_attribute_accuracy(model: AttributeCNN, images: torch.Tensor, labels: torch.Tensor, names: list[str],
                           device: torch.device, batch_size: int = 256) -> dict[str, float]:
    """Accuracy of each attribute branch on labelled images (missing labels skipped)."""
    model.eval()
    correct = torch.zeros(len(names))
    total = torch.zeros(len(names))
    for i in range(0, len(images), batch_size):
        _, logits = model(to_input(images[i : i + batch_size], device))
        y = labels[i : i + batch_size]
        for m, lg in enumerate(logits):
            known = y[:, m] >= 0
            correct[m] += (lg.argmax(1).cpu()[known] == y[known, m]).sum()
            total[m] += known.sum()
    return {f"acc_{n}": float(c / t) if t > 0 else float("nan") for n, c, t in zip(names, correct, total, strict=True)}


def train_epoch(model, opt, images, labels, order, batch_size, device, bar=None) -> tuple[float, float]:
    """One pass over ``order``; returns (mean loss, images/s). Under torchrun each rank takes its own part of
    every batch (a last batch smaller than the number of ranks is skipped: every rank must step)."""
    model.train()
    meter, losses = Throughput(), []
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        if len(idx) < distributed.world_size():
            continue
        meter.add(len(idx))  # the global batch
        idx = idx[distributed.shard(len(idx))]
        x = images[idx]
        if torch.rand(()) < 0.5:  # attributes are mirror-invariant
            x = x.flip(3)
        _, logits = model(to_input(x, device))
        loss = attribute_loss(logits, labels[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    mean = distributed.mean_over_ranks(torch.tensor(float(np.mean(losses)), dtype=torch.float64))
    return float(mean), meter.rate


def run_pretrain(split: str, out: str, cfg: PretrainConfig, log: LogFn | None = None, progress: bool = True,
                 checkpoint_dir: str = "") -> dict:
    """Train the attribute CNN on ``split/attr_train``; write the model artifact to ``out``; per-epoch
    checkpoints to ``checkpoint_dir`` (default ``out/checkpoints``, see :func:`checkpoint.state_uri`).
    Under torchrun the loop runs in the process group (:func:`distributed.session`), the model inside DDP."""
    start = time.perf_counter()
    seed_everything(cfg.seed)
    with distributed.session(pick_device()) as device:
        main = distributed.is_main()
        progress = progress and main
        vocab = load_split_vocab(split)
        df = shards.read_shards(storage.join(split, "attr_train"))
        images = decode_batch(list(df["image_bytes"]), cfg.model.image_size)
        labels = torch.from_numpy(label_matrix(df["labels"], vocab.num_attributes).astype(np.int64))
        perm = np.random.default_rng(cfg.seed).permutation(len(df))
        n_hold = int(round(len(df) * cfg.holdout_fraction))
        hold, train = perm[:n_hold], perm[n_hold:]

        model = build_attribute_cnn(cfg.model, vocab.sizes)
        if cfg.model.weights:
            load_backbone_weights(model.backbone, cfg.model.weights)
        model.to(device)
        opt = sgd(*split_decay(model), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
        state_uri, done, history = checkpoint.start(out, checkpoint_dir, model, opt, sched, cfg, main, logger)
        net = distributed.wrap(model, device)  # DDP when WORLD_SIZE > 1

        steps = (len(train) + cfg.batch_size - 1) // cfg.batch_size
        for epoch in range(done, cfg.epochs):
            order = torch.from_numpy(np.random.default_rng([cfg.seed, epoch]).permutation(train))
            with tqdm(total=steps, desc=f"pretrain epoch {epoch + 1}/{cfg.epochs}", disable=not progress) as bar:
                loss, rate = train_epoch(net, opt, images, labels, order, cfg.batch_size, device, bar)
            sched.step()
            row = {"loss": loss, "images_per_s": rate, "lr": opt.param_groups[0]["lr"]}
            if n_hold and main:
                accs = per_attribute_accuracy(model, images[hold], labels[hold], vocab.names, device)
                row.update(accs)
                row["acc_mean"] = float(np.nanmean(list(accs.values())))
            checkpoint.end_epoch(state_uri, model, opt, sched, epoch + 1, history, row, log, main)

        model.cpu()
        final = history[-1] if history else {}
        if main:
            save_model(out, "attribute_cnn", "attribute_cnn", model, cfgmod.to_dict(cfg.model), vocab.to_json(),
                       extra={"history": history, TAG_DATASET_DIGEST: dataset_digest(split)})
        return {
            "train_images": int(len(train)),
            "holdout_images": int(n_hold),
            "epochs": cfg.epochs,
            "seconds": round(time.perf_counter() - start, 2),
            **{k: v for k, v in final.items() if k.startswith("acc_") or k in ("loss", "images_per_s")},
        }
