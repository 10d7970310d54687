"""The data pipeline: records (JSONL, TFDS, samples) -> masked, packed batches -> a resumable
forget/replay(/retain) mixture laid out on the mesh. See README.md in this folder.

Entry points: `config.default_data_config()`, `pipeline.build_mixture(config)`,
`layout.to_global(batch, sharding)`, `tokenizer.tiny_tokenizer()`.
"""
