"""Training: `config` (TrainConfig, recipes; torch-free), `loop` (fit, resume, one epoch), `job`
(what an epoch needs), `restore` (continuing from last.pt), `distributed` (torchrun, DDP), `state`
(TrainState, RNG streams), `optim` (optimizer, schedule, EMA), `precision` (how the steps use
bfloat16 on this machine), `guards` and `finish` (the final scoring of best.pt). A run's metrics.csv is `ferlab.history`."""
from ..lazy import exports

_API = {"TrainConfig": "config", "RECIPES": "config", "build": "config", "fit": "loop", "resume": "loop",
        "train_one_epoch": "loop", "validate": "loop", "TrainState": "state", "lr_at": "optim",
        "TrainingDiverged": "guards", "BadHeadError": "guards"}
__all__ = sorted(_API)
__getattr__ = exports(__name__, _API)
