"""The training pipeline on Kubeflow Pipelines (kfp v2), runnable end to end on a laptop.

- :mod:`.dag`: the training DAG, once: steps, what flows between them, the gate.
- :mod:`.steps`: what each step does, in plain Python (calls into the stage functions).
- :mod:`.components`: the lightweight kfp components, one-line calls into :mod:`.steps`.
- :mod:`.pipeline`: the DAG wired into kfp, its parameters (defaults from the contract) and
  cluster settings.
- :mod:`.run`: run locally (``kfp.local``), compile, submit and schedule.
- :mod:`.walk`: the DAG walked in this process over the project's folders (``make train``).
- :mod:`.reports` and :mod:`.summary`: the reports the steps write; the local run's task table.

Nothing here is imported by the package at start-up: kfp loads only for pipeline commands.
"""
