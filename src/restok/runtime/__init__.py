"""The runtime: what every other part of restok uses to run safely, and nothing of the paper.

Atomic file writes (:mod:`.files`), one job per folder (:mod:`.locks`), the resumable chunk runner of code extraction
and evaluation (:mod:`.chunks`), precisions by name (:mod:`.precision`), devices and launcher processes
(:mod:`.processes`), whether the network may be used (:mod:`.network`), progress bars (:mod:`.progress`), stable seeds
(:mod:`.seeds`) and content hashes
(:mod:`.hashing`). The bottom layer: it imports nothing from restok.
"""
