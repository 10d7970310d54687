"""The tiny CPU default: the embedded tiny model unlearns the shipped synthetic Q-A sample
while replaying standard-library docstrings. Runs in about a minute on 2 cores."""
from synthflaw_jax.unlearn import default_config


def get_config():
    """Defaults from synthflaw_jax.unlearn.default_config(), sized for a laptop CPU."""
    c = default_config()
    c.model.path = "tiny"  # replace with an HF dir or synthflaw checkpoint to unlearn a real model
    c.data.seq_len = 128
    c.data.batch_size = 8
    c.data.mixture = "forget=1,replay=1"
    c.loss.method = "lower_bounded"
    # lambda in nats above the frozen reference model's own NLL of each forget example: the
    # random tiny model starts near ln(2048) = 7.6 nats, so an absolute 5.0 would be met from
    # step 1 and the forget term would never act (docs/unlearn.md has the numbers).
    c.loss.bound_reference = "reference"
    c.loss.bound = 1.0
    c.optim.learning_rate = 3e-4
    c.optim.warmup_steps = 5
    c.train.steps = 40
    c.train.log_every = 5
    c.checkpoint.every = 20
    return c
