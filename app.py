"""Any2Point zoo demo: `python app.py` serves the Gradio app (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT honoured)."""
import gradio as gr

with gr.Blocks(title="Any2Point zoo") as demo:
    gr.Markdown("# Any2Point zoo\nFrozen vision, language and audio transformers as 3D point-cloud classifiers.")

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=2).launch()
