"""Training: one run from a mixture to a model folder, and the DeMix components (docs/method.md steps 1-2).

- `run.py`: `train_on_mixture` (mixture -> plan -> Sampler -> loop -> model folder), and what the
  commands run with it: `train_base`, `train_reference` and `train_components` (one component per
  candidate, components.json).
- `loop.py`: `TrainConfig` and `train_loop`, the optimisation loop (DDP under torchrun, exact resume).
- `state.py`: the training-state folder (safetensors + trainer.json) that a resume reads.
- `fsdp.py`: FSDP2 sharding for models that do not fit one device.
- `lr_schedule.py`: warmup + cosine / WSD / constant learning-rate schedules.
"""
