"""Stage orchestration shared by the ``medvit`` CLI and the ``pipelines/*.py`` DVC entry points.

Each module here defines ``HELP``, ``add_arguments(parser)`` and
``run(args, params) -> int``. They are the only place besides ``pipelines/``
that calls ``medvit.tracking``; heavy imports happen inside ``run`` so that
``medvit --help`` stays fast.
"""

STAGES: tuple[str, ...] = ("sample", "ingest", "finetune", "zeroshot", "evaluate", "register")
