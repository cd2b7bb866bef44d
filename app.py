"""Any2Point zoo demo: upload a point cloud or mesh, compare how frozen vision, language and audio transformers
classify it. `python app.py` serves it on 127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT honoured).

UI and glue only: models and file reading (`zoo.read_points`) come from `zoo`; nothing from `train/`.
"""
import itertools
import os
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import numpy as np
from matplotlib.figure import Figure  # not pyplot: its global figure state is not safe across queue workers

from zoo import (SUPPORTED_EXTENSIONS, ModelUnavailable, PointCloudError, list_models, load_model, read_points,
                 write_points)
from zoo.registry import DEFAULTS, TASK_DEFAULTS, TASKS

try:  # ZeroGPU on Spaces; plain local runs don't need the package
    import spaces
    gpu = spaces.GPU
except ImportError:
    def gpu(fn):
        return fn

HERE = Path(__file__).parent
MODALITIES = ("vision", "language", "audio")
MAX_UPLOAD_MB = 50  # a 5M-point float32 .npy (60 MB) is refused; a 1M-point one is read and downsampled
MAX_POINTS = 200_000  # larger clouds are downsampled (zoo.files.stable_subset: order-invariant) before anything else
# every upload is read in a worker process that is stopped after READ_TIMEOUT_S and cannot allocate more than
# READ_MEMORY_MB; read_points also refuses, before allocating, any file declaring more than it holds or over
# MAX_FILE_POINTS points / MAX_MESH_ELEMENTS mesh vertices or faces (the worst 50 MiB mesh needs ~700 MB, see
# benchmarks/hostile_alloc.py)
READ_TIMEOUT_S = 30
READ_MEMORY_MB = 1536
MAX_FILE_POINTS = 10_000_000
MAX_MESH_ELEMENTS = 2_000_000
NONE = "(none)"
CONCURRENCY = 2  # requests the queue runs at once; more would only queue up for the same CPU cores
TASK_EXAMPLES = {"sh3d": "examples", "kicad33": "examples/components"}  # a task's example folder (.ply files)
EXAMPLES = {task: sorted(str(p.relative_to(HERE)) for p in (HERE / folder).glob("*.ply"))
            for task, folder in TASK_EXAMPLES.items()}
DEFAULT_TASK = next(iter(TASKS))
# one request per entry at a time: two forwards of one model on the same cores only slow each other down;
# different entries still run in parallel
_MODEL_LOCKS = defaultdict(threading.Lock)
_POOL = ThreadPoolExecutor(max_workers=3, thread_name_prefix="model")  # one thread per modality of an upload
# the 3D view's .ply files rotate through a few slots: Gradio copies each output into its own cache (by content)
# long before a slot comes round again, so a long-running server does not fill /tmp
_CLOUD_DIR, _CLOUD_SLOTS = Path(tempfile.mkdtemp(prefix="any2point-cloud-")), itertools.count()


UP_CHOICES = [("y up (the zoo's convention)", "y"), ("z up (CAD, scanners)", "z"), ("auto (each model picks)", "auto")]


def choices(modality, task=DEFAULT_TASK):
    """A task's trained entries of one modality that run here: a recipe (untrained entry) is listed in the zoo
    table, never offered."""
    return [r["name"] for r in list_models(modality, task) if r["available"] and r["trained"]] + [NONE]


def pick_task(task):
    """Task radio -> the three pickers (that task's entries, its default selected) and which examples show."""
    if task not in TASKS:
        raise gr.Error(f"Unknown task {task!r}: use one of {', '.join(TASKS)}.")
    pickers = []
    for m in MODALITIES:
        offered = choices(m, task)
        default = TASK_DEFAULTS[task].get(m)
        pickers.append(gr.Dropdown(choices=offered, value=default if default in offered else NONE))
    return (*pickers, *[gr.Column(visible=t == task) for t in TASKS])


def zoo_table():
    """Every registry entry with whether it runs here and why not, so missing entries are explained, not hidden."""
    rows = ["| entry | modality | backbone | state |", "|---|---|---|---|"]
    for r in list_models():
        state = "trained" if r["available"] else r["reason"]
        if r["recipe"]:  # listed so it can be trained; never in the pickers
            state = f"recipe, not a trained model: `{r['train_command']}`" + ("" if r["available"] else f"; {state}")
        rows.append(f"| `{r['name']}` | {r['modality']} | `{r['backbone']}` | {state} |")
    return "\n".join(rows)


def read_upload(path):
    """Uploaded file -> (N, 3) float32, or a gr.Error that says what is wrong with it."""
    if path is None:
        raise gr.Error("Upload a point cloud or mesh first.")
    try:
        return read_points(Path(path), num_points=2048, max_points=MAX_POINTS, max_bytes=MAX_UPLOAD_MB * 2**20,
                           max_elements=MAX_FILE_POINTS, max_mesh_elements=MAX_MESH_ELEMENTS,
                           timeout_s=READ_TIMEOUT_S, max_memory_mb=READ_MEMORY_MB)
    except PointCloudError as err:
        raise gr.Error(str(err))


def get_model(name):
    try:
        return load_model(name)
    except (ModelUnavailable, KeyError) as err:
        raise gr.Error(str(err.args[0] if err.args else err))


def check_up(up):
    up = up or "y"
    if up not in ("y", "z", "auto"):
        raise gr.Error(f"Unknown up axis {up!r}: use y, z or auto.")
    return up


def picked(names):
    names = [n for n in names if n and n != NONE]
    if not names:
        raise gr.Error("Pick at least one zoo entry.")
    return names


@gpu
def classify(points, names, up="y", explain=False):
    """-> {entry: (probs, latency_ms, up axis used, what the model saw or None)}: one pass per model (explain=True:
    the prediction and what the views figure shows come from the same forward). Returns plain data only: under
    ZeroGPU this runs in a worker process and its result is pickled back, so models stay in the cache."""
    def one(name):
        model = get_model(name)
        with _MODEL_LOCKS[name]:
            t = time.perf_counter()
            if explain:
                seen = model.explain(points, up=up)
                probs, used = seen["probs"], seen["up"]
            else:
                (probs, used), seen = model.predict_batch([points], up=up, with_up=True)[0], None
            return probs, (time.perf_counter() - t) * 1e3, used, seen
    # the models side by side: torch releases the GIL in its kernels, so an upload uses the cores the queue leaves
    return dict(zip(names, _POOL.map(one, names)))


def card(name, model, ms, up=None):
    """One result card: entry, whether its adapter was trained, latency, the up axis "auto" chose (if it was
    asked to) and the parameter budget."""
    state = "trained" if model.trained else "untrained (random adapter): its guesses mean nothing yet"
    chose = f" · read as {up} up (auto)" if up else ""
    return (f"**{name}**  \n{state} · {ms:.0f} ms{chose} · trainable {model.num_trainable():,} / backbone "
            f"{model.num_backbone():,} parameters")


def predict(file, vision=DEFAULTS["vision"], language=DEFAULTS["language"], audio=DEFAULTS["audio"], up="y"):
    """API: uploaded file (+ optional entry names per modality, + the file's up axis: y, z or auto) ->
    {entry name: {label: probability}}."""
    names = picked((vision, language, audio))
    up = check_up(up)
    return {name: probs for name, (probs, *_) in classify(read_upload(file), names, up).items()}


def compare(file, vision, language, audio, up="y", progress=gr.Progress()):
    """UI: labels, a card per modality, the normalised cloud in 3D and what each model saw."""
    up = check_up(up)
    chosen = dict(zip(MODALITIES, (vision, language, audio)))
    names = picked(chosen.values())
    points = read_upload(file)
    models = {}
    for i, name in enumerate(names):
        progress((i, len(names)), desc=f"loading {name}")
        models[name] = get_model(name)  # first use loads (cached afterwards), so the progress bar says why it waits
    progress((len(names), len(names)), desc="classifying")
    results = classify(points, names, up, explain=True)
    labels, cards = [], []
    for modality in MODALITIES:
        name = chosen[modality]
        if name not in results:
            labels.append(None)
            cards.append(f"**{modality}**: not selected")
            continue
        probs, ms, used, _ = results[name]
        labels.append(probs)
        cards.append(card(name, models[name], ms, used if up == "auto" else None))
    # the 3D view: the cloud the first model saw, normalised and in its up convention (y, as the viewer expects)
    first = next(iter(results.values()))[3]
    return (*labels, *cards, cloud_view(first["points"].numpy()),
            views_figure({n: (models[n], r[3]) for n, r in results.items()}))


def cloud_view(points):
    """A normalised cloud as a vertex-only .ply for gr.Model3D (shown as points)."""
    path = _CLOUD_DIR / f"cloud-{next(_CLOUD_SLOTS) % 64}.ply"
    return str(write_points(path, points))


def views_figure(seen):
    """{entry: (model, what it saw: ZooModel.explain's dict)} -> per entry the six virtual views (2D image plane or
    1D strip) with token centres coloured by their guided-adapter cell, and the mean view weights of the last
    block."""
    fig = Figure(figsize=(15, 2.3 * len(seen) + 0.3))
    axes = fig.subplots(len(seen), 7, squeeze=False, gridspec_kw=dict(width_ratios=[1] * 6 + [1.3]))
    for r, (name, (model, e)) in enumerate(seen.items()):
        coords, cells = e["coords"].numpy(), e["cells"].numpy()
        for v in range(coords.shape[0]):
            ax = axes[r, v]
            colour = cells[v] % 20
            if e["kind"] == "2d":
                ax.scatter(coords[v, :, 0], -coords[v, :, 1], c=colour, cmap="tab20", s=6)
                ax.set_xlim(-1, 1), ax.set_ylim(-1, 1)
            else:
                jitter = (np.arange(coords.shape[1]) % 5) / 5
                ax.scatter(coords[v], jitter, c=colour, cmap="tab20", s=6)
                ax.set_xlim(0, 1), ax.set_ylim(-0.2, 1)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"view {v + 1}" + ("" if r else f" ({e['kind']})"), fontsize=8)
        axes[r, 0].set_ylabel(f"{model.backbone.modality}\n{model.info.backbone_name if model.info else name}",
                              fontsize=8)
        ax = axes[r, 6]
        if e["view_weights"] is not None:
            w = e["view_weights"][-1].mean(0).numpy()
            ax.bar(range(1, len(w) + 1), w, color="tab:blue")
            ax.axhline(1 / len(w), color="grey", lw=0.8, ls="--")
            ax.set_title("view weights (last block)", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no guided adapter", ha="center", va="center", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def share_cpu():
    """Give each of the queue's CONCURRENCY workers its share of the cores (ANY2POINT_TORCH_THREADS overrides).
    torch's default of one intra-op thread per core makes concurrent requests, or any other busy process, fight
    for them, and threads waiting on a busy core are dramatically slower: on 2 shared cores the three default
    entries took ~5 s per cloud with 2 threads and ~0.14 s with 1."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(int(os.environ.get("ANY2POINT_TORCH_THREADS") or max(1, cores // CONCURRENCY)))


def warm_up():
    """Load the default entries in the background so the first request does not pay for it; one tiny prediction
    each also warms torch's kernels, and one example read starts the reader's server process."""
    for example in EXAMPLES[DEFAULT_TASK][:1]:
        try:
            read_upload(HERE / example)
        except gr.Error:
            pass
    cloud = np.random.default_rng(0).normal(size=(256, 3)).astype(np.float32)
    for name in DEFAULTS.values():
        try:
            model = load_model(name)
            with _MODEL_LOCKS[name]:
                model.predict(cloud)
        except Exception:  # an unavailable entry is reported when someone picks it
            pass


# uploads and outputs older than an hour are removed from Gradio's cache (checked hourly)
with gr.Blocks(title="Any2Point zoo", delete_cache=(3600, 3600)) as demo:
    gr.Markdown(
        "# Any2Point zoo\n"
        "Frozen **vision**, **language** and **audio** transformers classify a 3D point cloud through a "
        "parameter-free virtual projection into their own positional space; only ~1% of parameters were trained "
        "([Any2Point, ECCV 2024](https://arxiv.org/abs/2404.07989)). Upload a cloud or mesh "
        f"({' '.join(SUPPORTED_EXTENSIONS)}; up to {MAX_UPLOAD_MB} MiB, clouds above {MAX_POINTS:,} points are "
        "downsampled) and compare.")
    with gr.Row():
        with gr.Column(scale=1):
            task = gr.Radio([(label, t) for t, label in TASKS.items()], value=DEFAULT_TASK, label="task",
                            info="which zoo entries to compare: each task's entries were trained on its classes")
            upload = gr.File(label="point cloud or mesh", file_types=list(SUPPORTED_EXTENSIONS), type="filepath")
            up_axis = gr.Radio(UP_CHOICES, value="y", label="up axis of the file",
                               info="the entries were trained y up; z-up files read as y up get chance accuracy")
            pickers = [gr.Dropdown(choices(m), value=DEFAULTS[m], label=f"{m} entry") for m in MODALITIES]
            button = gr.Button("Compare", variant="primary")
            example_sets = []
            for t, label in TASKS.items():
                with gr.Column(visible=t == DEFAULT_TASK) as col:
                    if EXAMPLES[t]:
                        gr.Examples(EXAMPLES[t], inputs=upload,
                                    label=f"{label} examples (licences: examples/LICENSES.md)")
                example_sets.append(col)
            with gr.Accordion("all zoo entries", open=False):
                gr.Markdown(zoo_table())
        with gr.Column(scale=1):
            view3d = gr.Model3D(label="normalised cloud", clear_color=(1, 1, 1, 1), height=320)
    with gr.Row():
        cards, labels = [], []
        for m in MODALITIES:
            with gr.Column():
                cards.append(gr.Markdown(f"**{m}**", label=f"{m} card"))
                labels.append(gr.Label(num_top_classes=5, label=m))
    # a heading rather than the plot's own label, which would sit on top of the first view's title
    gr.Markdown("**What each model saw**: its six virtual views (2D image plane or 1D positions), token centres "
                "coloured by guided-adapter cell, and the mean per-view weights of the last block.")
    plot = gr.Plot(label="what each model saw", show_label=False)
    task.change(pick_task, task, [*pickers, *example_sets], api_name="pick_task")
    button.click(compare, [upload, *pickers, up_axis], [*labels, *cards, view3d, plot], api_name="compare")
    api_out = gr.JSON(label="probabilities", visible=False)
    api_button = gr.Button(visible=False)
    api_button.click(predict, [upload, *pickers, up_axis], api_out, api_name="predict")

# Gradio copies each example file into its cache while the page is built, without marking the copies
# keep-in-cache, so delete_cache removed them an hour after start (and closing the server at once) and clicking an
# example then said "File not found": keep what the build cached (the examples' copies, nothing of a user's)
upload.keep_in_cache.update(*demo.temp_file_sets)
demo.queue(default_concurrency_limit=CONCURRENCY, max_size=32)

if __name__ == "__main__":
    share_cpu()  # only when serving: importing the app (tests, notebooks) leaves torch's settings alone
    threading.Thread(target=warm_up, daemon=True).start()
    # host/port left to Gradio: it reads GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (default 127.0.0.1:7860). The
    # transfer limit is above MAX_UPLOAD_MB so an oversized file reaches read_upload and gets its one-line reason.
    demo.launch(max_file_size=f"{4 * MAX_UPLOAD_MB}mb")
