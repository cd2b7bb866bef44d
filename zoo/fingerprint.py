"""sha256 of a state dict: names, dtypes, shapes and bytes, in sorted-name order.

Used to pin a zoo entry to the exact backbone weights it was trained on, whatever the file they came from.
"""
import hashlib

import torch


def state_fingerprint(state) -> str:
    """`state` is a state dict or an nn.Module; returns a 64-hex sha256."""
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
