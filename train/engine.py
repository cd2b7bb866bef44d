"""Training loop on Hugging Face Accelerate: one code path for CPU, one GPU, or many (`accelerate launch`).

Checkpoint every epoch (atomic), `resume` continues exactly (data order, augmentation and dropout randomness are
all seeded per epoch or restored), the best epoch is chosen on val, test is evaluated once at the end.
"""
import csv
import json
import math
import os
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from train.augment import augment, resample, vote_logits

CKPT = "last.pt"


class TrainError(RuntimeError):
    """A one-line problem with the run's inputs (a config, a checkpoint, a dataset)."""


def param_groups(model, weight_decay, decay_all=True):
    """AdamW groups: every trainable tensor decayed, or (decay_all=False) only matrices and tables (>= 2 dims)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if decay_all:
        return [dict(params=params, weight_decay=weight_decay)]
    return [dict(params=[p for p in params if p.dim() >= 2], weight_decay=weight_decay),
            dict(params=[p for p in params if p.dim() < 2], weight_decay=0.0)]


def cosine_with_warmup(optimizer, warmup_steps, total_steps):
    def factor(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def collate(batch):
    pts, labels = zip(*batch)
    return torch.stack([torch.as_tensor(p, dtype=torch.float32) for p in pts]), torch.as_tensor(labels)


@torch.no_grad()
def evaluate(model, loader, accelerator, num_classes, votes=1, resample_to=None):
    """-> dict(acc, mean_class_acc, n, correct) over the whole loader (gathered across processes); correct: 0/1 per
    cloud in the loader's order."""
    model.eval()
    preds, targets = [], []
    for pts, y in loader:
        if resample_to:
            pts = resample(pts, resample_to, train=False)
        logits = vote_logits(model, pts, votes) if votes > 1 else model(pts)
        p, t = accelerator.gather_for_metrics((logits.argmax(-1), y))
        preds.append(p.cpu())
        targets.append(t.cpu())
    p, t = torch.cat(preds), torch.cat(targets)
    per_class = [(p[t == c] == c).float().mean().item() for c in range(num_classes) if (t == c).any()]
    return dict(acc=(p == t).float().mean().item(), mean_class_acc=sum(per_class) / max(1, len(per_class)),
                n=int(t.numel()), correct=(p == t).int().tolist())


def show_bar():
    """A progress bar only on a terminal: a log file gets the one line per epoch (ANY2POINT_PROGRESS=1 forces the
    bar, e.g. for a test that watches the steps of an epoch in a log)."""
    return sys.stderr.isatty() or os.environ.get("ANY2POINT_PROGRESS") == "1"


def peak_memory_mb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def fit(model, datasets, *, out_dir, epochs, batch_size, lr, weight_decay=0.05, warmup_epochs=10,
        grad_clip=10.0, seed=0, votes=10, resume=False, limit_batches=None, accelerator=None, log_every=0,
        decay_all=True, resample_to=None, rotate=True, max_steps=None):
    """Train `model` (an Any2Point) on datasets {"train", "val", "test"}; returns the result dict.

    decay_all=False is the official recipe: no weight decay on biases, norm weights and the cls token / position
    (every trainable tensor of fewer than 2 dims). resample_to=n: the datasets give larger clouds, and every
    training step takes a fresh subset of n (augment.resample), val and test an FPS n. rotate: the training
    augmentation's random rotation about the up axis. max_steps=N: stop after N optimiser steps in all (counted across
    epochs and resumes; the epoch in which it stops still validates and checkpoints, test still runs once): a cap for
    smoke and timing runs, the learning-rate schedule stays the one of `epochs`.

    out_dir receives last.pt (resume checkpoint), best.pt (best-on-val trainable state), log.csv, tb/ and result.json.
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    acc = accelerator or Accelerator()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CKPT
    num_classes = len(model.labels)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(param_groups(model, weight_decay, decay_all), lr=lr)
    train_len = len(datasets["train"])
    # per process: each sees 1/num_processes of the batches
    steps_per_epoch = max(1, (train_len // batch_size if train_len >= batch_size else 1) // acc.num_processes)
    if limit_batches:
        steps_per_epoch = min(steps_per_epoch, limit_batches)
    scheduler = cosine_with_warmup(optimizer, warmup_epochs * steps_per_epoch, epochs * steps_per_epoch)

    if max_steps is not None and max_steps < 1:
        raise TrainError(f"max_steps must be at least 1, got {max_steps}")
    state = dict(epoch=0, best_val=-1.0, best_epoch=-1, history=[], steps=0)
    if resume and ckpt_path.exists():
        try:
            ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            if ck.get("labels") != list(model.labels):
                raise TrainError(f"cannot resume from {ckpt_path}: it was trained on {len(ck.get('labels') or [])} "
                                 f"classes, this dataset has {num_classes}; use another --output-dir or the "
                                 "dataset it was trained on")
            model.load_trainable_state_dict(ck["model"])
        except (ValueError, RuntimeError, KeyError, EOFError) as err:
            raise TrainError(f"cannot resume from {ckpt_path}: {str(err).splitlines()[0]} "
                             "(it belongs to another model or is damaged; use another --output-dir)") from err
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        torch.set_rng_state(ck["rng"])
        state = ck["state"]
        state.setdefault("steps", 0)  # checkpoints written before the step count existed
        acc.print(f"resumed from {ckpt_path} after epoch {state['epoch']}")
    elif resume:
        acc.print(f"--resume: no checkpoint in {out}, starting fresh")

    def loader(split, shuffle, epoch=0):
        g = torch.Generator().manual_seed(seed * 1000 + epoch)
        return DataLoader(datasets[split], batch_size=batch_size, shuffle=shuffle, generator=g,
                          drop_last=shuffle and train_len >= batch_size, collate_fn=collate, num_workers=0)

    model, optimizer = acc.prepare(model, optimizer)
    raw = acc.unwrap_model(model)
    writer = _tensorboard(out / "tb") if acc.is_main_process else None
    log_file = log = None
    if acc.is_main_process:  # one writer: the other processes would truncate and rewrite the same file
        new_log = not (out / "log.csv").exists() or state["epoch"] == 0
        if not new_log:  # a kill between the log row and the checkpoint would leave a row the resumed run writes again
            rows = (out / "log.csv").read_text().splitlines()
            kept = rows[:1] + [r for r in rows[1:] if r.split(",")[0].isdigit()
                               and int(r.split(",")[0]) <= state["epoch"]]
            (out / "log.csv").write_text("\n".join(kept) + "\n")
        log_file = open(out / "log.csv", "w" if new_log else "a", newline="")
        log = csv.writer(log_file)
        if new_log:
            log.writerow(["epoch", "train_loss", "train_acc", "val_acc", "val_mean_class_acc", "lr", "seconds",
                          "clouds_per_s", "peak_mb"])

    for epoch in range(state["epoch"], epochs):
        if max_steps and state["steps"] >= max_steps:
            break
        model.train()
        g_aug = torch.Generator().manual_seed(seed * 1000 + epoch + 7)
        t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
        batches = acc.prepare(loader("train", True, epoch))
        bar = tqdm(batches, total=min(len(batches), steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs}",
                   disable=not acc.is_local_main_process or not show_bar(), leave=False)
        for step, (pts, y) in enumerate(bar):
            if step >= steps_per_epoch or max_steps and state["steps"] >= max_steps:
                break
            if resample_to:
                pts = resample(pts, resample_to, g_aug)
            with acc.autocast():
                logits = model(augment(pts, g_aug, rotate=rotate))
                loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            acc.backward(loss)
            if grad_clip:
                acc.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            scheduler.step()
            state["steps"] += 1
            seen += y.numel()
            loss_sum += loss.item() * y.numel()
            correct += (logits.argmax(-1) == y).sum().item()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        seconds = time.perf_counter() - t0
        if acc.num_processes > 1:  # each process trained on its share of the batches: the epoch is their sum
            seen, loss_sum, correct = acc.reduce(torch.tensor([seen, loss_sum, correct], dtype=torch.float64,
                                                              device=acc.device), "sum").tolist()
        val = evaluate(model, acc.prepare(loader("val", False)), acc, num_classes, resample_to=resample_to)
        row = dict(epoch=epoch + 1, train_loss=loss_sum / max(1, seen), train_acc=correct / max(1, seen),
                   val_acc=val["acc"], val_mean_class_acc=val["mean_class_acc"],
                   lr=scheduler.get_last_lr()[0], seconds=seconds, clouds_per_s=seen / max(seconds, 1e-9),
                   peak_mb=peak_memory_mb(acc.device))
        state["history"].append(row)
        state["epoch"] = epoch + 1
        if val["acc"] > state["best_val"]:
            state["best_val"], state["best_epoch"] = val["acc"], epoch + 1
            if acc.is_main_process:
                _atomic_save({k: v.cpu() for k, v in raw.trainable_state_dict().items()}, out / "best.pt")
        if acc.is_main_process:
            log.writerow([f"{row[k]:.6g}" if isinstance(row[k], float) else row[k] for k in row])
            log_file.flush()
            if writer:
                for k, v in row.items():
                    if k != "epoch":
                        writer.add_scalar(k, v, epoch + 1)
            _atomic_save(dict(model={k: v.cpu() for k, v in raw.trainable_state_dict().items()},
                              optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                              rng=torch.get_rng_state(), state=state, labels=list(raw.labels)), ckpt_path)
        acc.print(f"epoch {epoch + 1}/{epochs}  loss {row['train_loss']:.4f}  train {row['train_acc']:.3f}  "
                  f"val {val['acc']:.3f}  {row['clouds_per_s']:.1f} clouds/s  peak {row['peak_mb']:.0f} MB")
    if log_file:
        log_file.close()
    acc.wait_for_everyone()

    best = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    raw.load_trainable_state_dict(best)
    test_loader = acc.prepare(loader("test", False))
    test = evaluate(model, test_loader, acc, num_classes, resample_to=resample_to)
    test_vote = evaluate(model, test_loader, acc, num_classes, votes=votes, resample_to=resample_to) \
        if votes > 1 else test
    hist = state["history"]
    result = dict(best_epoch=state["best_epoch"], val_acc=state["best_val"], test_acc=test["acc"],
                  test_mean_class_acc=test["mean_class_acc"], test_acc_vote=test_vote["acc"],
                  test_mean_class_acc_vote=test_vote["mean_class_acc"], votes=votes, test_n=test["n"],
                  epochs=epochs, train_seconds=sum(h["seconds"] for h in hist),
                  clouds_per_s=sum(h["clouds_per_s"] for h in hist) / max(1, len(hist)),
                  peak_mb=max((h["peak_mb"] for h in hist), default=0.0),
                  trainable_parameters=raw.num_trainable(), device=str(acc.device),
                  processes=acc.num_processes,  # test_n counts clouds once whatever the processes
                  steps=state["steps"], max_steps=max_steps)  # steps: optimiser steps per process
    if acc.is_main_process:
        (out / "result.json").write_text(json.dumps(result, indent=2))
        if writer:
            writer.close()
    return dict(result, test_correct=test["correct"])  # per test cloud, for the run's record (not result.json)


def _atomic_save(obj, path):
    tmp = Path(str(path) + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _tensorboard(folder):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # logs still go to log.csv
        return None
    return SummaryWriter(str(folder))
