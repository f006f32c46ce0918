"""Applications on top of the library: the offline demo report (:mod:`.demo`, ``restok demo``) and the web demo
(:mod:`.web`, ``restok app``, a Gradio app). Imports the pipelines, models, evaluation metrics and data below it."""
