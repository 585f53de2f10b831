"""The demo: a miniature world where VoP's claims can be checked on a CPU in minutes.

* :mod:`vop.demo.world` — stills for pretraining and videos for the benchmark (one recipe, a seed);
* :mod:`vop.demo.pretrain` — ``python -m vop.demo.pretrain`` makes the bundled ``tiny-synthetic`` CLIP;
* :mod:`vop.demo.run` — ``vop demo``: every method trained with ``vop train``'s loop, scored on test;
* :mod:`vop.demo.claims` — the claims table, ``--check`` and the picture.
"""

from vop.demo.run import DEFAULT_RUNS, SETTINGS, DemoSettings, format_table, run_demo, with_overrides

__all__ = ["DEFAULT_RUNS", "SETTINGS", "DemoSettings", "format_table", "run_demo", "with_overrides"]
