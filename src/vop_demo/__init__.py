"""The demo: a miniature world where VoP's claims can be checked on a CPU in minutes.

It lives beside the library (as ``open_clip_train`` beside ``open_clip``): it imports ``vop``,
and ``vop`` never imports it (``vop demo`` loads it inside its ``run``).

* :mod:`vop_demo.world` — stills for pretraining and videos for the benchmark (one recipe, a seed);
* :mod:`vop_demo.pretrain` — ``python -m vop_demo.pretrain`` makes the bundled ``tiny-synthetic`` CLIP;
* :mod:`vop_demo.settings` — the runs and the training settings;
* :mod:`vop_demo.backbone` — the bundled backbone, loaded through ``resolve_backbone``, and G1-G3;
* :mod:`vop_demo.runs`, :mod:`vop_demo.scoring` — every method trained with ``vop train``'s loop, scored on test;
* :mod:`vop_demo.claims`, :mod:`vop_demo.clock` — the claims and the demo's wall clock;
* :mod:`vop_demo.report`, :mod:`vop_demo.chart`, :mod:`vop_demo.search_example` — what it prints and saves;
* :mod:`vop_demo.console` — labelled lines, progress bars only on a terminal;
* :mod:`vop_demo.pipeline` — all of it in order (``run_demo``).
"""
