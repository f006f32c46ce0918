"""Entry of the web demo as a Hugging Face Space (or ``python app.py`` locally): the ``restok app`` of the models
named by RESTOK_TOKENIZER / RESTOK_GENERATOR (default: the embedded MNIST models, which need no download), with the
tokenizers in RESTOK_COMPARE (comma-separated, any family) side by side."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from restok.apps.web import build_app  # noqa: E402

demo = build_app(
    os.environ.get("RESTOK_TOKENIZER", "restok-tiny-mnist"),
    os.environ.get("RESTOK_GENERATOR", "har-tiny-mnist"),
    compare=[t for t in os.environ.get("RESTOK_COMPARE", "").split(",") if t],
)

if __name__ == "__main__":
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
