"""The ground-truth corpus: schemas, atomic sharded Parquet writes, manifests and splits."""
