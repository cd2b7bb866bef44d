"""Forward time of an adapted Any2Point model vs the bare frozen backbone on the same tokens (synthetic backbone).

    python -m benchmarks overhead [--width 384 --depth 12 --points 2048 --tokens 128 --repeats 30 --threads 0]

A randomly initialised DINOv2-shaped ViT (no download, any size), batch 1. The timings are speed.bench_forward's:
bare = the frozen blocks alone; adapted = Any2Point from the same tokens to logits (projection, PE, bottleneck and
guided adapters, head); adapters off = the same with both adapters off; end to end = from the points (adds the
tokenizer). Interleaved repeats, medians.
The issue's bar: adapted <= 1.3x bare and tokenizer <= 10% of the forward, at 2,048 points on the CPU.
"""
import argparse

import torch

from benchmarks.speed import bench_forward, forward_table
from core import Any2Point
from zoo.specs import build_backbone


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=384)
    p.add_argument("--depth", type=int, default=12)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--points", type=int, default=2048)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    bb, _ = build_backbone("timm:vit_small_patch14_dinov2", pretrained=False, img_size=518, embed_dim=a.width,
                           depth=a.depth, num_heads=a.heads)
    model = Any2Point(bb, 15, num_points=a.points, num_tokens=a.tokens).eval()
    f = bench_forward(model, torch.device("cpu"), a.points, a.repeats)
    print("\n".join(forward_table([("random ViT (DINOv2 shape)", f)])))
    print(f"\nadapted / bare = {f['ratio']:.2f}x   adapted / adapters off = {f['ratio_adapters']:.2f}x   "
          f"end to end / bare = {f['ratio_end_to_end']:.2f}x   "
          f"tokenizer / end to end = {f['tokenizer_share']:.1%}   "
          f"(torch threads {torch.get_num_threads()}, trainable {model.num_trainable():,})")
    return f


if __name__ == "__main__":
    main()
