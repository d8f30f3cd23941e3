"""`incdsl train`: train a spec's network on an image folder, scikit-learn's digits or
synthetic data, on a CPU, a GPU, or many processes under torchrun.

Modules: `recipes` (hyper-parameters as data), `data` (data sets and loaders), `optim`
(optimisers, schedule, weight averaging), `checkpoint` (format, validation, digests),
`resume` (the network and settings a checkpoint holds), `pretrained` (`--weights`),
`evaluation` (`incdsl eval`), `distributed`, `progress` and `loop` (the training loop:
`train(network, TrainConfig(...))`).

Importing this package imports nothing heavy; `recipes` stays free of torch so the command
line can describe the recipes without it.
"""

MAX_SYNTHETIC = 10_000_000  # images of `--data synthetic`: the option's bound, and a checkpoint's
