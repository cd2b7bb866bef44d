"""Forward time of an adapted Any2Point model vs the bare frozen backbone on the same number of tokens.

    python benchmarks/overhead.py [--width 384 --depth 12 --points 2048 --tokens 128 --repeats 20]

Both run in one process on the same input size; the ratio is what matters (absolute times vary by machine).
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from core import Any2Point  # noqa: E402
from core.backbones import build_backbone  # noqa: E402


def timed(fn, repeats):
    with torch.no_grad():
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]  # median


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=384)
    p.add_argument("--depth", type=int, default=12)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--points", type=int, default=2048)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    bb = build_backbone("timm:vit_small_patch14_dinov2", pretrained=False, img_size=518, embed_dim=a.width,
                        depth=a.depth, num_heads=a.heads)
    model = Any2Point(bb, 15, num_points=a.points, num_tokens=a.tokens).eval()
    pts = torch.randn(a.batch, a.points, 3)
    tokens = torch.randn(a.batch, a.tokens + 1, a.width)

    adapted = timed(lambda: model(pts), a.repeats)
    tokenizer = timed(lambda: model.tokenizer(pts), a.repeats)
    with model.bare():  # the hooks stay registered; bare() switches the adapters off
        bare = timed(lambda: bb(tokens), a.repeats)
    print(f"| model | width x depth | points | tokens | median ms |\n|---|---|---|---|---|")
    print(f"| bare frozen backbone | {a.width}x{a.depth} | - | {a.tokens + 1} | {bare * 1e3:.1f} |")
    print(f"| tokenizer (FPS + kNN + MLP) | - | {a.points} | {a.tokens} | {tokenizer * 1e3:.1f} |")
    print(f"| Any2Point adapted forward | {a.width}x{a.depth} | {a.points} | {a.tokens + 1} | {adapted * 1e3:.1f} |")
    print(f"\nadapted / bare = {adapted / bare:.2f}x   tokenizer / adapted = {tokenizer / adapted:.1%}   "
          f"(torch threads {torch.get_num_threads()}, trainable {model.num_trainable():,})")
    return adapted / bare


if __name__ == "__main__":
    main()
