"""The one writer of generated blocks: the text between `<!-- NAME:start -->` and `<!-- NAME:end -->` in a file."""
import re
from pathlib import Path


def markers(name):
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def read_block(text, name):
    """The block's current content (without its markers), or None where the file has no such block."""
    start, end = markers(name)
    m = re.search(re.escape(start) + r"\n?(.*?)\n?" + re.escape(end), text, flags=re.S)
    return m.group(1) if m else None


def replace_block(text, name, md):
    """`text` with block `name` holding `md` (appended at the end where the block is absent)."""
    start, end = markers(name)
    block = f"{start}\n{md}\n{end}"
    if start in text:
        return re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    return text + f"\n{block}\n"


def update_block(path, name, md):
    """Write `md` into block `name` of the file at `path`; returns whether the file changed."""
    path = Path(path)
    text = path.read_text()
    new = replace_block(text, name, md)
    if new != text:
        path.write_text(new)
    return new != text
