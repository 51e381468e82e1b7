"""AMNet training (§3.2–3.6, §4): triplets + manipulation indicators, L = λ·La + (1 − λ)·Lt.

The representation learner starts from the pretrained attribute CNN (its backbone and, where the
shapes match, its classification branches); the memory starts from the prototypes (§3.4) and is
updated by back-propagation (Eq. 2). The loop knows nothing about tracking: it calls ``log``.

Under torchrun (``WORLD_SIZE`` > 1, :mod:`amnet.train.distributed`) every rank draws the same global
batch from (seed, epoch) and trains on its own contiguous part of it inside DistributedDataParallel, so
the gradients (the memory's too) are averaged over exactly the configured batch; rank 0 alone writes
checkpoints, the model and the log, and every rank resumes from the same checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from amnet import config as cfgmod
from amnet import storage
from amnet.config import TrainConfig
from amnet.data.schema import Vocabulary
from amnet.data.split import dataset_digest, label_matrix, load_split_vocab
from amnet.data.tensors import DiskPool, to_input
from amnet.data.triplets import TripletBatch, TripletSampler
from amnet.errors import AmnetError
from amnet.model_store import LoadedModel, build_model, load_model, save_model
from amnet.models.losses import amnet_loss, classification_loss, mined_ranking_loss, triplet_ranking_loss
from amnet.models.memory import make_indicator
from amnet.names import MISSING, TAG_DATASET_DIGEST
from amnet.runtime import LogFn, decode_workers, pick_device, seed_everything, use_bf16
from amnet.train import checkpoint, distributed
from amnet.train.loop_utils import Throughput, sgd, split_decay
from amnet.train.prototypes import load_prototypes

logger = logging.getLogger(__name__)  # `log` is the metrics callback here


def init_from_attribute_cnn(model: torch.nn.Module, attr_state: dict[str, torch.Tensor]) -> list[str]:
    """Copy every attribute-CNN tensor whose name and shape match (backbone, heads); returns names."""
    own = model.state_dict()
    usable = {k: v for k, v in attr_state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    return sorted(usable)


STEP_METRICS = ("loss", "loss_attr", "loss_rank", "target_acc")
# what ``train.keep: best`` maximises, the first one a validation row has: the exact target's Recall@1 when
# the split has item groups, else attribute top-1
SELECTION_METRICS = ("val_recall1", "val_top1")
# scores a model in training after an epoch: (model, device, image size) -> {"val_...": value}
ValidateFn = Callable[[torch.nn.Module, torch.device, int], dict[str, float]]


@dataclass(frozen=True)
class TrainOptions:
    """The step's options beyond the paper (TrainConfig keys of the same names; defaults = the paper)."""

    negatives: str = "sampled"
    classify_pos_neg: bool = False
    flip: bool = False
    ranking_space: str = "representation"

    @classmethod
    def of(cls, cfg: TrainConfig) -> TrainOptions:
        return cls(cfg.negatives, cfg.classify_pos_neg, cfg.flip, cfg.ranking_space)


def optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with momentum (§3.6); the memory and manipulator at ``lr x manipulator_lr_mult``."""
    fast = ("memory.", "manipulator.")
    if cfg.manipulator_lr_mult == 1.0:
        return sgd(*split_decay(model), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    groups = []
    for is_fast in (False, True):
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if p.requires_grad and name.startswith(fast) == is_fast:
                (no_decay if p.ndim <= 1 or "memory" in name else decay).append(p)
        lr = cfg.lr * (cfg.manipulator_lr_mult if is_fast else 1.0)
        groups += [{"params": decay, "weight_decay": cfg.weight_decay, "lr": lr},
                   {"params": no_decay, "weight_decay": 0.0, "lr": lr}]
    return torch.optim.SGD([g for g in groups if g["params"]], lr=cfg.lr, momentum=cfg.momentum)


def train_step(model, opt, images: torch.Tensor, batch: TripletBatch, offsets: list[int], total_values: int,
               lam: float, margin: float, device, bf16: bool = False, labels: torch.Tensor | None = None,
               options: TrainOptions | None = None, items: torch.Tensor | None = None) -> torch.Tensor:
    """One SGD step on a triplet batch; returns the detached ``STEP_METRICS`` as one (4,) tensor.

    The 3B images are gathered with one index where the pool lives (the GPU when it fits there) and
    normalised once; bf16 autocast (``bf16``) covers the forward and the losses, not the backward.
    ``labels`` (N, M) are the pool's labels (needed by ``options.negatives`` != sampled and
    ``options.classify_pos_neg``); ``items`` (N,) their variant-group codes: for the batch's ``exact``
    triplets mining may also take another item carrying the target labels. No ``.item()`` here: the
    caller reads the values when it logs, so a GPU step never waits for the host.
    """
    opts = options or TrainOptions()
    b = len(batch.ref)
    rows_np = np.concatenate([batch.ref, batch.pos, batch.neg])
    rows = torch.from_numpy(rows_np).to(images.device)
    x = to_input(images[rows], device)  # (3B, 3, S, S): ref | pos | neg
    if opts.flip:  # attributes are mirror-invariant: flip each image on its own coin
        flip = torch.rand(x.shape[0], device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    h = make_indicator(batch.changes, offsets, total_values).to(device, non_blocking=True)  # (B, C)
    target = torch.from_numpy(batch.target).to(device, non_blocking=True)  # (B, M): desired attributes (Eq. 4)
    own = None  # (3B, M): each image's own labels
    if labels is not None and (opts.negatives != "sampled" or opts.classify_pos_neg):
        own = labels[torch.from_numpy(rows_np)].to(device, non_blocking=True).long()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model(x[:b], h, x[b : 2 * b], x[2 * b :])
        la = classification_loss(out["logits"], target)  # Eq. 4
        if opts.classify_pos_neg and own is not None:  # Fig. 3: the pos and neg branches, their own labels
            pn = torch.cat([out["pos"], out["neg"]])  # (2B, Q)
            la = la + classification_loss([head(pn) for head in distributed.unwrap(model).heads], own[b:])
        # Eq. 5 between r' and r (paper), or between their vectors in the model's retrieval space
        space = (lambda v: v.float()) if opts.ranking_space == "representation" else (
            lambda v: distributed.unwrap(model).embed(v).float())
        r_manip, pos = space(out["r_manip"]), space(out["pos"])
        if opts.negatives == "sampled" or own is None:
            lt = triplet_ranking_loss(r_manip, pos, space(out["neg"]), margin)  # Eq. 5
        else:  # Eq. 5, the negative mined among the batch's 3B images whose attributes differ from the target
            cands = space(torch.cat([out["ref"], out["pos"], out["neg"]]))  # (3B, Q)
            item, exact = None, None
            if batch.exact is not None and items is not None:
                item = items[torch.from_numpy(rows_np)].to(device, non_blocking=True)
                exact = torch.from_numpy(batch.exact).to(device, non_blocking=True)
            valid = negative_mask(own, target, item, exact)
            lt = mined_ranking_loss(r_manip, pos, cands, valid, margin, opts.negatives)
        loss = amnet_loss(la, lt, lam)  # Eq. 6
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        # over the known target labels only (the target is -1 where the reference's label is missing)
        right = torch.stack([(lg.argmax(1) == target[:, m]).sum() for m, lg in enumerate(out["logits"])])
        acc = right.sum().float() / (target != MISSING).sum().clamp_min(1).float()
    return torch.stack([loss.detach().float(), la.detach().float(), lt.detach().float(), acc])


def negative_mask(own: torch.Tensor, target: torch.Tensor, item: torch.Tensor | None = None,
                  exact: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 3B) bool: which of the batch's 3B images (``own`` (3B, M) labels, ``item`` (3B,) variant-group
    codes, -1 = none; ref | pos | neg) may be triplet i's negative: any image whose labels differ from
    its ``target`` (B, M) on an attribute known (not -1) on both sides, since an unknown label is neither
    equal nor different and an image that may carry the target must not be pushed away; for an ``exact``
    triplet (its positive is the reference's own variant) also any other item, whatever its labels,
    since the shopper asked for this item, not for the labels."""
    known = (own[None, :, :] != MISSING) & (target[:, None, :] != MISSING)  # (B, 3B, M)
    valid = ((own[None, :, :] != target[:, None, :]) & known).any(dim=2)
    if item is None or exact is None:
        return valid
    b = target.shape[0]
    other = (item[None, :] != item[b : 2 * b, None]) | (item[None, :] < 0)  # not the positive's item
    return valid | (exact[:, None] & other)


def pool_on_device(images: torch.Tensor | DiskPool, device: torch.device) -> torch.Tensor | DiskPool:
    """The decoded uint8 pool on the GPU when it takes under a quarter of its free memory (then each
    step gathers there, no host copy), else left where it is: a :class:`DiskPool` read per batch
    (into pinned buffers on a GPU, for asynchronous copies), or a host tensor (pinned)."""
    if device.type != "cuda":
        return images
    free, _ = torch.cuda.mem_get_info(device)
    nbytes = images.nbytes if isinstance(images, DiskPool) else images.numel() * images.element_size()
    if nbytes < free // 4:
        return images.to_device(device) if isinstance(images, DiskPool) else images.to(device)
    if isinstance(images, DiskPool):
        images.pin = True
        return images
    return images.pin_memory()


@dataclass(frozen=True)
class TrainRun:
    """One :func:`run_train` call with its inputs loaded: what :func:`train_loop` trains on, where it writes."""

    split: str
    out: str
    cfg: TrainConfig
    attr: LoadedModel  # the pretrained attribute CNN
    vocab: Vocabulary
    memory_init: torch.Tensor | None  # the prototypes (None for no_memory)
    pool: DiskPool  # the decoded triplet pool
    log: LogFn | None = None
    progress: bool = True
    checkpoint_dir: str = ""
    start: float = 0.0  # time.perf_counter() when run_train began (the result's ``seconds``)
    validate: ValidateFn | None = None  # scores the validation queries after each epoch (rank 0 only)


def run_train(split: str, attr_model: str, prototypes: str | None, out: str, cfg: TrainConfig,
              log: LogFn | None = None, progress: bool = True, checkpoint_dir: str = "",
              validate: ValidateFn | None = None) -> dict:
    """Train one AMNet variant; write the model artifact to ``out``; per-epoch checkpoints to
    ``checkpoint_dir`` (default ``out/checkpoints``, see :func:`checkpoint.state_uri`); ``validate``: the
    validation queries' scorer, called after every epoch (``train.keep: best`` needs it)."""
    start = time.perf_counter()
    seed_everything(cfg.seed)
    attr = load_model(attr_model)
    vocab = load_split_vocab(split)
    if vocab.to_json() != attr.vocab.to_json():
        raise AmnetError(f"{attr_model}: the attribute CNN's attributes differ from those of the split {split}")
    memory_init = None
    if cfg.variant != "no_memory":
        if not prototypes:
            raise AmnetError(f"variant {cfg.variant!r} needs --prototypes (the output of `amnet step prototypes`)")
        memory_init = load_prototypes(prototypes)

    # decoded shard by shard into a local file, rows read per batch: memory does not grow with the pool
    pool = DiskPool.build(storage.join(split, "triplet_pool"), attr.model_config.image_size, decode_workers())
    try:
        return train_loop(TrainRun(split, out, cfg, attr, vocab, memory_init, pool, log, progress, checkpoint_dir,
                                   start, validate))
    finally:
        pool.close()


def rank_part(batch: TripletBatch) -> TripletBatch:
    """This rank's contiguous part of a global triplet batch (the whole batch for one process)."""
    part = distributed.shard(len(batch.ref))
    return TripletBatch(ref=batch.ref[part], pos=batch.pos[part], neg=batch.neg[part], target=batch.target[part],
                        changes=batch.changes[part], exact=None if batch.exact is None else batch.exact[part])


def train_loop(run: TrainRun) -> dict:
    """The triplet loop of :func:`run_train`: every epoch, one checkpoint; then the model artifact. Under
    torchrun it runs in the process group (:func:`distributed.session`), the model inside DDP."""
    split, out, cfg, attr, vocab, pool = run.split, run.out, run.cfg, run.attr, run.vocab, run.pool
    log, checkpoint_dir, start = run.log, run.checkpoint_dir, run.start
    with distributed.session(pick_device()) as device:
        main = distributed.is_main()
        progress = run.progress and main
        sampler = TripletSampler(label_matrix(pool.labels, vocab.num_attributes), seed=cfg.seed,
                                 two_change_fraction=cfg.two_change_fraction,
                                 hard_negative_fraction=cfg.hard_negative_fraction, groups=pool.groups,
                                 group_positive_fraction=cfg.group_positives)
        if cfg.group_positives > 0:
            logger.info("group positives: %d of %d pool images have a variant 1-2 attributes away%s",
                        len(sampler.group_refs), len(pool), "" if pool.groups is not None
                        else " (the split has no item_group column: re-run `amnet data split`)")

        model = build_model("amnet", cfg.variant, attr.model_config, vocab, run.memory_init, cfg.architecture)
        init_from_attribute_cnn(model, attr.model.state_dict())
        model.to(device)
        images = pool_on_device(pool, device)
        bf16 = use_bf16(cfg.precision, device)
        opt = optimizer(model, cfg)
        pool_labels = torch.from_numpy(sampler.labels.astype(np.int64))  # (N, M): mining and Fig. 3's branches
        pool_items = None if pool.groups is None else torch.from_numpy(pool.groups)
        options = TrainOptions.of(cfg)
        sched = (torch.optim.lr_scheduler.StepLR(opt, cfg.lr_step_epochs, gamma=0.1) if cfg.lr_step_epochs
                 else torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs))
        state_uri, done, history = checkpoint.start(out, checkpoint_dir, model, opt, sched, cfg, main, logger)
        lam = cfg.effective_lam
        net = distributed.wrap(model, device)  # DDP when WORLD_SIZE > 1: gradients averaged over ranks
        validate = run.validate if main else None
        if cfg.keep == "best" and validate is None and main:
            logger.warning("train.keep: best without validation queries: keeping the last epoch")
        best = checkpoint.load_best(state_uri) if done and cfg.keep == "best" and main else None

        for epoch in range(done, cfg.epochs):
            net.train()
            meter, rows = Throughput(), []
            batches = sampler.batches(epoch, cfg.steps_per_epoch, cfg.batch_size)
            bar = tqdm(batches, total=cfg.steps_per_epoch, desc=f"train {cfg.variant} epoch {epoch + 1}/{cfg.epochs}",
                       disable=not progress)
            for step, batch in enumerate(bar):
                rows.append(train_step(net, opt, images, rank_part(batch), vocab.offsets, vocab.total_values, lam,
                                       cfg.margin, device, bf16, pool_labels, options, pool_items))
                meter.add(3 * cfg.batch_size)  # the global batch: every rank steps in lockstep
                if progress and step % 10 == 0:  # reading the loss waits for the device: not every step
                    bar.set_postfix(loss=f"{rows[-1][0].item():.3f}")
            sched.step()
            means = distributed.mean_over_ranks(torch.stack(rows).mean(0)).tolist()
            summary = dict(zip(STEP_METRICS, means, strict=True))
            summary.update(images_per_s=meter.rate, lr=opt.param_groups[0]["lr"])
            if validate is not None:
                summary.update(validate_epoch(validate, model, device, attr.model_config.image_size))
                best = keep_best(best, summary, model, epoch + 1) if cfg.keep == "best" else None
            checkpoint.end_epoch(state_uri, model, opt, sched, epoch + 1, history, summary, log, main, best)

        if best is not None and best["epoch"] != cfg.epochs:
            logger.info("keeping epoch %d of %d (best %s %.4f on the validation queries)", best["epoch"],
                        cfg.epochs, best["metric"], best["score"])
            model.load_state_dict(best["model"])
        model.cpu()
        if main:
            save_model(out, "amnet", cfg.variant, model, cfgmod.to_dict(attr.model_config), vocab.to_json(),
                       extra={"history": history, "train_config": cfgmod.to_dict(cfg), "architecture": cfg.architecture,
                              TAG_DATASET_DIGEST: dataset_digest(split)})
        final = dict(history[-1])
        if best is not None:
            final["kept_epoch"] = int(best["epoch"])
        return {"variant": cfg.variant, "epochs": cfg.epochs, "seconds": round(time.perf_counter() - start, 2),
                "pool_images": int(len(pool)), **final}


def validate_epoch(validate: ValidateFn, model: torch.nn.Module, device: torch.device,
                   image_size: int) -> dict[str, float]:
    """The validation metrics after an epoch (``val_*``) and how long they took (``val_seconds``)."""
    started = time.perf_counter()
    row = validate(model, device, image_size)
    row["val_seconds"] = round(time.perf_counter() - started, 2)
    logger.info("validation: %s", ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "val_seconds"))
    return row


def keep_best(best: dict | None, row: dict, model: torch.nn.Module, epoch: int) -> dict | None:
    """``best`` or, when epoch ``epoch`` (its metrics ``row``) scores higher on the selection metric, that
    epoch with a CPU copy of the model's weights (a tie keeps the earlier epoch)."""
    metric = next((m for m in SELECTION_METRICS if m in row), None)
    if metric is None:
        return best
    if best is None or row[metric] > best["score"]:
        return {"epoch": epoch, "metric": metric, "score": float(row[metric]),
                "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
    return best
