"""Sweeps over seeds and hyperparameters on Ray Tune (the ``sweep`` extra: ``ray[tune]``).

    from policylab import sweep
    report = sweep.run("configs/sweeps/ppo_cartpole.yaml", out="sweeps/ppo", num_cpus=2)
    print(report["table"])          # one row per configuration: IQM/mean ± 95 % CI over seeds

Every trial writes an ordinary run directory (progress.csv, TensorBoard, checkpoint) under
``<out>/trials/``; ``policylab eval`` and ``policylab plot`` work on them unchanged.
"""

from policylab.sweep.report import summarize
from policylab.sweep.runner import SweepInterrupted, pending_trials, run
from policylab.sweep.spec import SweepSpec, Trial, load_spec

__all__ = ["SweepInterrupted", "SweepSpec", "Trial", "load_spec", "pending_trials", "run", "summarize"]
