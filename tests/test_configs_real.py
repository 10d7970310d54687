"""The real-model configs: each loads, validates, names a zoo architecture whose parameter
count matches the published one within 1%, and splits its batch evenly over its TPU slice."""
import pathlib

import pytest

from synthflaw_jax import config_io, losses, model_zoo, train
from synthflaw_jax.data import config as data_config
from synthflaw_jax.models.config import ModelConfig
from synthflaw_jax.tpu_specs import parse_topology

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
REAL = ["llama2_7b", "llama2_13b", "llama2_70b", "llama3_8b", "llama3_70b", "mistral_7b", "qwen2_7b"]


@pytest.mark.parametrize("name", REAL)
def test_config_loads_and_validates(name):
    c = config_io.load_config_file(CONFIGS / f"{name}.py")
    assert c.model.arch == name
    cfg = model_zoo.model_config(c.model.arch, dtype=c.model.dtype, param_dtype=c.model.param_dtype,
                                 remat_policy=c.model.remat_policy, attention_kernel=c.model.attention_kernel)
    assert c.model.dtype == "bfloat16"
    if cfg.sliding_window and cfg.sliding_window < c.data.seq_len:
        pytest.fail("the Pallas kernel path cannot take a sliding window that binds")
    assert c.data.seq_len <= cfg.max_position_embeddings
    losses.validate_loss_config(c.loss)
    data_config.validate_config(c.data)
    schedule = train.make_schedule(c.optim, c.train.steps)
    train.make_optimizer(c.optim, schedule)
    assert c.model.path.startswith("/data/models/"), "real configs carry a documented placeholder path"

    topology = parse_topology(c.tpu.topology)
    sizes = [c.mesh.data, c.mesh.fsdp, c.mesh.tensor]
    fixed = 1
    for s in sizes:
        fixed *= 1 if s == -1 else s
    assert topology.chips % fixed == 0
    shards = topology.chips // c.mesh.tensor  # batch shards: data x fsdp
    for stream, rows in data_config.stream_batch_sizes(c.data).items():
        assert rows % c.train.grad_accum == 0, stream
        assert (rows // c.train.grad_accum) % shards == 0, f"{stream} rows do not split over {shards} shards"
    # overrides and the JSON record work on the extra sections (model.arch, tpu.topology)
    config_io.apply_overrides(c, ["--config.tpu.topology=v5p-128", "--config.model.arch=llama2_7b"])
    assert '"topology": "v5p-128"' in config_io.to_json(c)


@pytest.mark.parametrize("name", REAL)
def test_zoo_matches_published_parameter_count(name):
    cfg = ModelConfig.from_hf_dict(model_zoo.hf_config(name))
    published = model_zoo.PUBLISHED_PARAMS[name]
    assert abs(cfg.num_params() - published) / published < 0.01


def test_llama2_7b_exact_count():
    # meta-llama/Llama-2-7b-hf: 6,738,415,616 parameters
    assert model_zoo.model_config("llama2_7b").num_params() == 6_738_415_616


def test_unknown_arch_is_a_one_line_error():
    from synthflaw_jax.errors import SynthflawError

    with pytest.raises(SynthflawError, match="not known"):
        model_zoo.model_config("gpt5")
