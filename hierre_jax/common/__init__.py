"""The machinery every role shares: one-line user errors (`errors`), the entry points'
flag parsing (`cli`), config values (`config_values`), where a command may write
(`locations`), files sealed with their digests (`sealed`), a frozen image tower's features
on disk (`image_store`) and the device mesh (`sharding`). It imports nothing else of
hierre_jax."""
