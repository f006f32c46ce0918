"""The core: the paper's structure as data, and what every model is described by.

The token hierarchy (:mod:`.hierarchy`: level sizes, masks, positions, HAR steps -- the one source of truth), typed
configs (:mod:`.fields` builds and checks every config of restok; each model family keeps its own config in its home,
:mod:`restok.models`) and the model registry (:mod:`.registry`). Imports only :mod:`restok.runtime`.
"""
